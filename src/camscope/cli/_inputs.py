"""Options of the commands that read images (``--timeout``, ``--window``), safe printing of
input names, and a progress line that also works when stderr is not a terminal.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import unicodedata
from typing import Any

DEFAULT_TIMEOUT = 60.0  # same as camscope.io.DEFAULT_DEADLINE (kept import-free here)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """``--timeout`` (URL downloads) and ``--window`` (DICOM/NIfTI)."""
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=None,
        metavar="S",
        help=f"seconds one URL download may take in all (default {DEFAULT_TIMEOUT:g}; a silent "
        "server is given up after at most 10 s)",
    )
    parser.add_argument(
        "--window",
        type=window_pair,
        default=None,
        metavar="C,W",
        help="window centre and width for DICOM/NIfTI values, e.g. 40,400 for CT soft tissue "
        "(default: the file's own window, else the values' min..max)",
    )


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def window_pair(text: str) -> tuple[float, float]:
    """argparse type: ``CENTRE,WIDTH`` with a positive finite width."""
    parts = [p.strip() for p in text.split(",")]
    try:
        centre, width = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected CENTRE,WIDTH such as 40,400; got {text!r}"
        ) from None
    if not (math.isfinite(centre) and math.isfinite(width)) or width <= 0:
        raise argparse.ArgumentTypeError(
            f"the window width must be a positive number; got {text!r}"
        )
    return centre, width


def shown(text: object) -> str:
    """``text`` for a one-line terminal message: control characters (escape codes, newlines,
    carriage returns) become visible escapes such as ``\\x1b`` and ``\\n``."""
    return "".join(
        ch if unicodedata.category(ch)[0] != "C" else ch.encode("unicode_escape").decode("ascii")
        for ch in str(text)
    )


class Progress:
    """Images done out of a total, on stderr: a tqdm bar on a terminal, otherwise one plain line
    with the rate and the time left at most every ``every`` seconds.

    Without a terminal, :meth:`passes` is the ``progress(done, total)`` callback of the
    perturbation methods (Score-CAM family, Ablation-CAM): a slow method on one image (SS-CAM can
    take many minutes) then also gets a line with its time left, under the same rate limit.
    """

    def __init__(self, total: int, label: str, every: float = 5.0) -> None:
        self.total, self.label, self.every = total, label, every
        self.done = 0
        self.began = self.last = time.monotonic()
        self.passes_began = self.passes_last = self.began
        self.passes_done = self.passes_total = 0
        self.bar: Any = None
        if sys.stderr.isatty() and total > 3:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", file=sys.stderr, leave=False)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def advance(self, images: int = 1) -> None:
        self.done += images
        if self.bar is not None:
            self.bar.update(images)
            return
        now = time.monotonic()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            self.write(self.line(now))

    def passes(self, done: int, total: int) -> None:
        """``progress(done, total)`` of one perturbation run. A count that does not grow, or
        another total, is a new run, taken to have begun at the previous call."""
        now = time.monotonic()
        if done <= self.passes_done or total != self.passes_total:
            self.passes_began = self.passes_last
        self.passes_done, self.passes_total, self.passes_last = done, total, now
        if now - self.last < self.every or done >= total:
            return
        self.last = now
        left = (now - self.passes_began) / max(done, 1) * (total - done)
        self.write(
            f"{self.label}: image {min(self.done + 1, self.total)}/{self.total}: model passes "
            f"{done}/{total}, about {_duration(left)} left for this method"
        )

    def line(self, now: float) -> str:
        elapsed = now - self.began
        rate = elapsed / max(self.done, 1)
        left = rate * (self.total - self.done)
        return (
            f"{self.label}: {self.done}/{self.total} images, {rate:.2f} s/image, "
            f"about {_duration(left)} left"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
