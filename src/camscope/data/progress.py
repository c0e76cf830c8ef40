"""The one progress bar of every command: :class:`Progress`.

On a terminal it is a tqdm bar (rate and time left); when stderr is not a terminal (a log file, a
pipe) it writes one plain line with the rate and the time left at most every ``every`` seconds,
so a redirected log gets lines, never a bar's carriage-return redraws. A ``callback(done, total)``
gets every step instead, for library callers. While a bar is open, the records of the
``camscope`` loggers go through it (tqdm's ``logging_redirect_tqdm``), so a warning does not tear
the bar; :meth:`Progress.write` prints a line the same way.

Example:
    >>> with Progress(120, "camscope audit") as bar:  # doctest: +SKIP
    ...     for batch in batches:
    ...         bar.advance(len(batch))
"""

from __future__ import annotations

import logging
import sys
import time
import unicodedata
from collections.abc import Callable
from typing import Any

ProgressFn = Callable[[int, int], None]


class Progress:
    """Images done out of a total, on stderr.

    Args:
        total: how many images the run will settle (None: :meth:`start` says it later).
        label: the line's prefix (``"camscope evaluate"``).
        enabled: False: nothing is shown (the callback still gets every step).
        callback: ``callback(done, total)`` after every step.
        every: seconds between two plain lines without a terminal.

    Without a terminal, :meth:`passes` is the ``progress(done, total)`` callback of the
    perturbation methods (Score-CAM family, Ablation-CAM): a slow method on one image (SS-CAM can
    take many minutes) then also gets a line with its time left, under the same rate limit.
    """

    def __init__(
        self,
        total: int | None = None,
        label: str = "camscope",
        *,
        enabled: bool = True,
        callback: ProgressFn | None = None,
        every: float = 5.0,
    ) -> None:
        self.label, self.every = label, every
        self.enabled, self.callback = enabled, callback
        self.total: int | None = None
        self.done = self.passes_done = self.passes_total = 0
        self.began = self.last = self.passes_began = self.passes_last = time.monotonic()
        self.bar: Any = None
        self._redirect: Any = None
        if total is not None:
            self.start(total)

    def start(self, total: int) -> None:
        """Count ``total`` images from now (the walker calls it when no total was given)."""
        self.total, self.done = total, 0
        self.began = self.last = self.passes_began = self.passes_last = time.monotonic()
        if self.bar is None and self.enabled and total > 0 and sys.stderr.isatty():
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.bar = tqdm(
                total=total, unit="img", desc=self.label, file=sys.stderr, dynamic_ncols=True,
                smoothing=0.05, leave=False,
            )  # fmt: skip
            logger = logging.getLogger("camscope")
            filters = [f for h in logger.handlers for f in h.filters]
            self._redirect = logging_redirect_tqdm(loggers=[logger])
            self._redirect.__enter__()
            for handler in logger.handlers:  # the bar's handler filters as the one it replaced
                handler.filters = handler.filters or list(filters)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def write(self, line: str) -> None:
        """Print ``line`` on stderr without tearing the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def skipped(self, source: str, reason: str) -> None:
        """``LABEL: skipped SOURCE: REASON`` (names printed safely): an ``on_skip`` of the walker."""
        self.write(f"{self.label}: skipped {shown(source)}: {shown(reason)}")

    def note(self, **values: str) -> None:
        """Figures shown beside the bar on a terminal (``loss="0.412"``); plain lines keep to
        the count and the time left."""
        if self.bar is not None:
            self.bar.set_postfix(values)

    def advance(self, images: int = 1) -> None:
        """``images`` more settled (done, skipped or failed)."""
        self.done += images
        if self.callback is not None:
            self.callback(self.done, self.total or 0)
        if self.bar is not None:
            self.bar.update(images)
            return
        now = time.monotonic()
        total = self.total or 0
        if self.enabled and now - self.last >= self.every and self.done < total:
            self.last = now
            self.write(self.line(now))

    def passes(self, done: int, total: int) -> None:
        """``progress(done, total)`` of one perturbation run. A count that does not grow, or
        another total, is a new run, taken to have begun at the previous call."""
        now = time.monotonic()
        if done <= self.passes_done or total != self.passes_total:
            self.passes_began = self.passes_last
        self.passes_done, self.passes_total, self.passes_last = done, total, now
        if not self.enabled or now - self.last < self.every or done >= total:
            return
        self.last = now
        left = (now - self.passes_began) / max(done, 1) * (total - done)
        self.write(
            f"{self.label}: image {min(self.done + 1, self.total or 0)}/{self.total}: model passes "
            f"{done}/{total}, about {duration(left)} left for this method"
        )

    def line(self, now: float) -> str:
        elapsed = now - self.began
        rate = elapsed / max(self.done, 1)
        left = rate * ((self.total or 0) - self.done)
        return (
            f"{self.label}: {self.done}/{self.total} images, {rate:.2f} s/image, "
            f"about {duration(left)} left"
        )

    def close(self) -> None:
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def shown(text: object) -> str:
    """``text`` for a one-line terminal message: control characters (escape codes, newlines,
    carriage returns) become visible escapes such as ``\\x1b`` and ``\\n``."""
    return "".join(
        ch if unicodedata.category(ch)[0] != "C" else ch.encode("unicode_escape").decode("ascii")
        for ch in str(text)
    )


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
