"""The per-image file job behind ``camscope explain``: load, explain in batches, write pictures.

:func:`explain_to_files` walks the inputs with the batch walker (:class:`camscope.data.walk.Walk`:
decoding, skips with their reason, the progress bar), appends one record per input to a
:class:`JobState` as it goes, so a caller interrupted (Ctrl-C) still holds the records of every
image done, and reports through a :class:`Reporter` (the library prints nothing). One image that
cannot be read or written fails alone. One method (or method at a layer) that cannot explain this model is skipped with its
reason (the engine's ``Explanation.skipped``, ``strict=False``), and the others are written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..data.dataset import LoadOptions, Prepared, Sample
from ..data.walk import Walk, name_images
from ..errors import UsageError
from .files import PictureWriter
from .plan import ImagePlan, plan_image

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from ..core.result import Explanation
    from ..data.progress import Progress
    from ..models.recipe import LoadedModel

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Where the job tells its caller what happens (the CLI prints it)."""

    def input_failed(self, source: str, reason: str) -> None: ...

    def method_skipped(self, key: str, reason: str) -> None: ...

    def warning(self, text: str) -> None: ...

    def note(self, text: str) -> None: ...


class LineReporter:
    """A :class:`Reporter` that says each thing on one line of the progress bar's stream,
    ``LABEL: ...``, with names shown safely (``camscope explain``)."""

    def __init__(self, progress: Progress, label: str) -> None:
        self.progress, self.label = progress, label

    def _say(self, text: str) -> None:
        from ..data.progress import shown

        self.progress.write(f"{self.label}: {shown(text)}")

    def input_failed(self, source: str, reason: str) -> None:
        self._say(f"skipped {source}: {reason}")

    def method_skipped(self, key: str, reason: str) -> None:
        method, _, layer = key.partition("@")  # the engine's "method@layer" for one layer
        self._say(f"skipped method {method}{f' at layer {layer}' if layer else ''}: {reason}")

    def warning(self, text: str) -> None:
        self._say(f"warning: {text}")

    def note(self, text: str) -> None:
        self._say(text)


@dataclass
class JobState:
    """What the job has done so far (complete at any interruption)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PictureRequest:
    """What to explain: methods, layer names, target and :func:`camscope.explain` keywords."""

    methods: list[str]
    layers: list[str]
    target: str | int
    calls: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1

    @property
    def layer(self) -> str | list[str]:
        """The ``layer`` of :func:`camscope.explain`: one name, or the list to fuse."""
        return self.layers if len(self.layers) > 1 else self.layers[0]


@dataclass
class LoadedImage:
    """One decoded input image, its model input, and the seconds spent loading it."""

    item: Sample
    image: Image.Image
    x: torch.Tensor
    seconds: float


@dataclass
class FileJob:
    """One run of the per-image job: the model, what to explain, how images load, the writer of
    the files, what was done so far and who is told."""

    loaded: LoadedModel
    request: PictureRequest
    load: LoadOptions
    writer: PictureWriter
    state: JobState
    reporter: Reporter

    def fail(self, item: Sample, reason: str, seconds: float) -> None:
        """The record of an input that failed (the walker told the reporter)."""
        self.state.failed += 1
        self.state.records.append(
            {
                "source": item.source,
                "stem": item.stem,
                "error": reason,
                "files": [],
                "seconds": round(seconds, 4),
            }
        )

    def said(self, result: Explanation, warnings: list[str]) -> None:
        """Each skipped method and each warning of ``result`` told once per job."""
        for key, reason in result.skipped.items():
            if key not in self.state.skipped:
                self.state.skipped[key] = reason
                self.reporter.method_skipped(key, reason)
        for text in warnings:
            if text not in self.state.warnings:
                self.state.warnings.append(text)
                self.reporter.warning(text)

    def submit(self, plan: ImagePlan, result: Explanation, seconds: float) -> None:
        """Queue an image's files and keep its record."""
        record = self.writer.submit(plan)
        record["skipped"] = dict(result.skipped)
        record["warnings"] = list(result.warnings)
        record["seconds"] = round(seconds, 4)
        self.state.records.append(record)

    def report_writes(self, failed: list[dict[str, Any]]) -> None:
        for record in failed:
            self.state.failed += 1
            self.reporter.input_failed(record["source"], str(record["error"]))


def explain_to_files(
    job: FileJob,
    items: list[Sample],
    progress: Progress | None = None,
    alone: Callable[[LoadedImage, Walk[Prepared]], None] | None = None,
) -> None:
    """Explain every item and write its pictures; records go to ``job.state`` as images finish
    (``progress`` advances by each batch). ``alone`` explains and writes one image per call
    instead (a detector's, segmentation or embedding model's task: :mod:`.tasks`)."""
    walk: Walk[Prepared] = Walk(
        items, spec=job.loaded.spec, options=job.load, progress=progress,
        batch_size=1 if alone else job.request.batch_size, on_skip=job.reporter.input_failed,
    )  # fmt: skip
    try:
        for batch in walk:
            loaded = [
                LoadedImage(o.sample, o.value.image, o.value.x, o.seconds)
                for o in batch.outcomes
                if o.value is not None
            ]
            for o in batch.outcomes:
                if o.error is not None:
                    job.fail(o.sample, o.error, o.seconds)
            if alone is not None:
                for entry in loaded:
                    alone(entry, walk)
            else:
                _explain_batch(job, loaded, walk)
            job.report_writes(job.writer.collect())
    finally:
        job.report_writes(job.writer.close())


def _explain_batch(job: FileJob, loaded: list[LoadedImage], walk: Walk[Prepared]) -> None:
    for group, outcome in explain_groups(job, loaded):
        for i, entry in enumerate(group):
            if isinstance(outcome, str):
                walk.skip(entry.item, outcome)
                job.fail(entry.item, outcome, entry.seconds)
                continue
            result, seconds = outcome
            began = time.perf_counter()
            spec, methods, options = job.loaded.spec, job.request.methods, job.writer.options
            plan = plan_image(entry.item, entry.image, result, i, spec, methods, options)
            share = entry.seconds + seconds / len(group)
            job.submit(plan, result, share + time.perf_counter() - began)


def explain_groups(job: FileJob, loaded: list[LoadedImage]) -> list[tuple[list[LoadedImage], Any]]:
    """Explain a chunk in one call: ``[(images, (result, seconds) or error text)]``.

    Methods (and layers) that cannot run are skipped by the engine (``strict=False``) and
    reported once each; a request that no method can serve raises the engine's usage error. If
    the call fails for a reason that is not the request's (an image the model cannot take), each
    image is retried alone so that one bad image does not take the others with it.
    """
    import torch

    from ..core.engine import explain
    from ..core.result import warnings_reported_by_caller

    if not loaded:
        return []
    request, (model, _, device, _) = job.request, job.loaded

    def attempt(group: list[LoadedImage]) -> tuple[Explanation, float]:
        began = time.perf_counter()
        x = torch.cat([entry.x for entry in group]).to(device)
        with warnings_reported_by_caller():  # said once below, naming the files
            result = explain(
                model,
                x,
                request.methods,
                request.layer,
                request.target,
                **request.calls,
                strict=False,
            )
        items = [entry.item for entry in group]
        job.said(result, [name_images(w, items) for w in result.warnings])
        return result, time.perf_counter() - began

    try:
        return [(loaded, attempt(loaded))]
    except UsageError:
        raise  # the request's fault (no method can run), not an image's: a ValueError too
    except (RuntimeError, ValueError) as err:
        if len(loaded) == 1:
            log.debug("explain failed", exc_info=True)
            return [(loaded, f"{type(err).__name__}: {err}")]
    return [group for entry in loaded for group in explain_groups(job, [entry])]
