"""The one batch walker: decode, skip with a reason, progress, cancel and resume, for every command.

:class:`Walk` hands the samples of a data set to its caller a batch at a time (:class:`Batch`),
each decoded by ``load`` (default :meth:`Sample.prepare <camscope.data.dataset.Sample.prepare>`).
A sample that cannot be used (a bad or missing file, an error found when the data was read, a
label of no model class where one is needed) is **skipped with its reason** (:func:`outcome`, the
one skip rule): recorded in :attr:`Walk.skipped`, told to ``on_skip(source, reason)`` (default: a
logged warning naming the file), and the others go on; a :class:`~camscope.errors.UsageError` (a
setting wrong for every image) stops the walk. A caller reports its own failures on a sample (the
model failed on it) through :meth:`Walk.skip`. **Progress** advances by a batch's size once the
caller is done with it; **cancel** is asked before every batch; **resume** is ``positions`` (the
samples still to do), what the caller does in its loop body (appending rows, committing shards)
surviving an interruption; **workers** decode in DataLoader processes, where a ``collate`` may
give the batches another form (the data-set job stacks them) with ``len()`` and ``failures()``.

Example:
    >>> walk = Walk(data.items, spec=spec, batch_size=8, progress=True, label="audit")  # doctest: +SKIP
    >>> for batch in walk:  # doctest: +SKIP
    ...     x = torch.cat([p.x for _, p in batch.ok])
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import CamscopeError, ImageLoadError, UsageError
from .dataset import LoadOptions, Sample
from .progress import Progress, ProgressFn

if TYPE_CHECKING:
    from ..models import ModelSpec

log = logging.getLogger(__name__)

T = TypeVar("T")
SkipFn = Callable[[str, str], None]


@dataclass(frozen=True)
class Skip:
    """A sample left out: its id, its source and why."""

    id: str
    source: str
    reason: str


@dataclass
class Outcome(Generic[T]):
    """One sample after ``load``: its value, or the reason it cannot be used, and the seconds
    ``load`` took."""

    position: int
    sample: Sample
    value: T | None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Batch(Generic[T]):
    """The default batch: every sample of the chunk with its outcome."""

    outcomes: list[Outcome[T]]

    def __len__(self) -> int:
        return len(self.outcomes)

    @property
    def ok(self) -> list[tuple[Sample, T]]:
        """``(sample, loaded value)`` of the usable samples, in order."""
        return [(o.sample, o.value) for o in self.outcomes if o.error is None]  # type: ignore[misc]

    def failures(self) -> list[tuple[Sample, str]]:
        return [(o.sample, o.error) for o in self.outcomes if o.error is not None]


def outcome(
    position: int, sample: Sample, load: Callable[[Sample], T], need_class: bool = False
) -> Outcome[T]:
    """``load(sample)``, or the reason the sample is skipped (the one skip rule)."""
    began = time.perf_counter()
    try:
        if need_class and not sample.class_ids and not sample.error:
            error = f"label {sample.label!r} names no class of the model"
        else:
            value = load(sample)
            return Outcome(position, sample, value, None, time.perf_counter() - began)
    except ImageLoadError as err:
        error = err.reason
    except UsageError:
        raise  # a setting (say, the spec's interpolation) is wrong for every image: stop
    except CamscopeError as err:
        error = str(err)
    except (OSError, ValueError, MemoryError) as err:  # decoding beyond what load_image guards
        log.debug("loading %s failed", sample.source, exc_info=True)
        error = f"{type(err).__name__}: {err}"
    return Outcome(position, sample, None, error, time.perf_counter() - began)


class Loading:
    """Map-style dataset: ``loading[position]`` is the :class:`Outcome` of that sample (it runs
    in DataLoader workers, so it holds the samples and ``load``, nothing else)."""

    def __init__(
        self, samples: Sequence[Sample], load: Callable[[Sample], Any], need_class: bool = False
    ) -> None:
        self.samples, self.load, self.need_class = samples, load, need_class

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, position: int) -> Outcome[Any]:
        position = int(position)
        return outcome(position, self.samples[position], self.load, self.need_class)


def worker_init(_worker_id: int) -> None:
    """Loader workers decode with PIL and numpy; one torch thread each keeps the cores for the
    model."""
    import torch

    torch.set_num_threads(1)


class Walk(Generic[T]):
    """Walk ``samples`` in batches (see the module docstring).

    Args:
        samples: the samples (a list or a lazy sequence).
        load: ``sample -> value``; default :meth:`Sample.prepare` with ``spec`` and ``options``.
        batch_size: samples per batch.
        positions: the positions still to do, in order (default: all).
        progress: a :class:`Progress` advanced by each batch's size once the caller is done with
            it, or True / ``callback(done, total)`` for one the walk makes (with ``label``).
        on_skip: told ``(source, reason)`` of every skipped sample (default: a logged warning
            naming its id and its source).
        cancel: asked before every batch; True ends the walk.
        workers: DataLoader worker processes that decode (0: in this process).
        collate: ``list[Outcome] -> batch`` (default :class:`Batch`).
        pin_memory: page-locked batches (for a CUDA model; the batch needs ``pin_memory()``).
        need_class: skip samples whose label names no model class.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        load: Callable[[Sample], T] | None = None,
        *,
        spec: ModelSpec | None = None,
        options: LoadOptions | None = None,
        batch_size: int = 8,
        positions: Sequence[int] | None = None,
        progress: Progress | bool | ProgressFn | None = None,
        label: str = "camscope",
        on_skip: SkipFn | None = None,
        cancel: Callable[[], bool] | None = None,
        workers: int = 0,
        collate: Callable[[list[Outcome[T]]], Any] | None = None,
        pin_memory: bool = False,
        need_class: bool = False,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1; got {batch_size}")
        if load is None:
            if spec is None:
                raise UsageError("Walk needs a load function or a model spec")
            load = functools.partial(Sample.prepare, spec=spec, options=options)  # type: ignore[assignment]
        self.loading = Loading(samples, load, need_class)  # type: ignore[arg-type]
        # kept as given (a numpy array of a job's millions of positions is not copied to a list)
        self.positions = range(len(samples)) if positions is None else positions
        self.batch_size, self.workers, self.pin_memory = batch_size, workers, pin_memory
        self.collate = collate or Batch
        self.progress, self.label = progress, label
        self.on_skip, self.cancel = on_skip, cancel
        self.skipped: list[Skip] = []
        self.cancelled = False

    def __len__(self) -> int:
        return len(self.positions)

    def skip(self, sample: Sample, reason: str) -> None:
        """Record a skipped sample and tell ``on_skip`` (the one way a skip is reported)."""
        self.skipped.append(Skip(sample.id, sample.source, reason))
        if self.on_skip is not None:
            self.on_skip(sample.source, reason)
        elif sample.id != sample.source:
            log.warning("skipped %s (%s): %s", sample.id, sample.source, reason)
        else:
            log.warning("skipped %s: %s", sample.source, reason)

    def __iter__(self) -> Iterator[Any]:
        if len(self.positions) == 0:
            return
        bar, owned = self.progress, not isinstance(self.progress, Progress)
        if not isinstance(bar, Progress):
            callback = bar if callable(bar) else None
            bar = Progress(len(self), self.label, enabled=bar is True, callback=callback)
        elif bar.total is None:
            bar.start(len(self))
        try:
            yield from self._batches(bar)
        finally:
            if owned:
                bar.close()

    def _batches(self, bar: Progress) -> Iterator[Any]:
        from torch.utils.data import DataLoader

        loader: DataLoader[Any] = DataLoader(
            self.loading,  # type: ignore[arg-type]
            batch_size=self.batch_size,
            sampler=self.positions,
            num_workers=self.workers,
            collate_fn=self.collate,
            worker_init_fn=worker_init if self.workers else None,
            prefetch_factor=2 if self.workers else None,
            pin_memory=self.pin_memory,
        )
        for batch in loader:
            if self.cancel is not None and self.cancel():
                self.cancelled = True
                return
            for sample, reason in batch.failures():
                self.skip(sample, reason)
            yield batch
            bar.advance(len(batch))


_INDICES = re.compile(r"image\(s\) \[([\d, ]+)\]")


def name_images(text: str, samples: Sequence[Sample | str]) -> str:
    """An engine message about ``image(s) [0, 2]`` of a batch, with the images' sources (or the
    names given) instead of their positions in the batch."""
    given = [s if isinstance(s, str) else s.source for s in samples]

    def sources(match: re.Match[str]) -> str:
        picked = [int(i) for i in match.group(1).split(",") if i.strip()]
        names = [given[i] if i < len(given) else str(i) for i in picked]
        return "image(s) " + ", ".join(names)

    return _INDICES.sub(sources, text)


@contextmanager
def naming_warnings(
    samples: Sequence[Sample | str], logger: logging.Logger = log
) -> Iterator[None]:
    """Engine warnings of the :func:`camscope.explain` calls inside this block (``image(s) [0]``
    of a batch) are logged once each on leaving it, naming the samples' files instead of their
    positions in the batch (:func:`name_images`); a command wraps each explain call of a batch of
    ``samples`` (or of the names of its images) in it."""
    from ..core.result import warnings_reported_by_caller

    said: list[str] = []
    try:
        with warnings_reported_by_caller(said):
            yield
    finally:
        for text in dict.fromkeys(name_images(w, samples) for w in said):
            logger.warning("%s", text)
