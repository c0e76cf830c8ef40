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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..data.dataset import LoadOptions, Prepared, Sample
from ..data.walk import Walk, name_images
from ..errors import UsageError
from .files import PictureWriter
from .plan import plan_image

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

    from ..core.result import Explanation
    from ..data.progress import Progress
    from ..models import ModelSpec

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Where the job tells its caller what happens (the CLI prints it)."""

    def input_failed(self, source: str, reason: str) -> None: ...

    def method_skipped(self, key: str, reason: str) -> None: ...

    def warning(self, text: str) -> None: ...


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


@dataclass
class LoadedImage:
    """One decoded input image, its model input, and the seconds spent loading it."""

    item: Sample
    image: Image.Image
    x: torch.Tensor
    seconds: float


def explain_to_files(
    model: nn.Module,
    spec: ModelSpec,
    device: torch.device,
    items: list[Sample],
    request: PictureRequest,
    load: LoadOptions,
    writer: PictureWriter,
    state: JobState,
    reporter: Reporter,
    progress: Progress | None = None,
) -> None:
    """Explain every item and write its pictures; records go to ``state`` as images finish
    (``progress`` advances by each batch)."""
    methods = list(request.methods)
    walk: Walk[Prepared] = Walk(
        items, spec=spec, options=load, batch_size=request.batch_size, progress=progress,
        on_skip=reporter.input_failed,
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
                    _fail(state, o.sample, o.error, o.seconds)
            for group, outcome in explain_groups(
                model, loaded, methods, request, device, state, reporter
            ):
                for i, entry in enumerate(group):
                    if isinstance(outcome, str):
                        walk.skip(entry.item, outcome)
                        _fail(state, entry.item, outcome, entry.seconds)
                        continue
                    result, seconds = outcome
                    began = time.perf_counter()
                    plan = plan_image(
                        entry.item, entry.image, result, i, spec, methods, writer.options
                    )
                    record = writer.submit(plan)
                    record["skipped"] = dict(result.skipped)
                    record["warnings"] = list(result.warnings)
                    share = entry.seconds + seconds / len(group)
                    record["seconds"] = round(share + time.perf_counter() - began, 4)
                    state.records.append(record)
            _report_writes(writer.collect(), state, reporter)
    finally:
        _report_writes(writer.close(), state, reporter)


def _report_writes(failed: list[dict[str, Any]], state: JobState, reporter: Reporter) -> None:
    for record in failed:
        state.failed += 1
        reporter.input_failed(record["source"], str(record["error"]))


def _fail(state: JobState, item: Sample, reason: str, seconds: float) -> None:
    """The record of an input that failed (the walker told the reporter)."""
    state.failed += 1
    state.records.append(
        {
            "source": item.source,
            "stem": item.stem,
            "error": reason,
            "files": [],
            "seconds": round(seconds, 4),
        }
    )


def explain_groups(
    model: nn.Module,
    loaded: list[LoadedImage],
    methods: list[str],
    request: PictureRequest,
    device: torch.device,
    state: JobState,
    reporter: Reporter,
) -> list[tuple[list[LoadedImage], Any]]:
    """Explain a chunk in one call: ``[(images, (result, seconds) or error text)]``.

    Methods (and layers) that cannot run are skipped by the engine (``strict=False``) and
    reported once each; a request that no method can serve raises the engine's usage error. If
    the call fails for a reason that is not the request's (an image the model cannot take), each
    image is retried alone so that one bad image does not take the others with it.
    """
    import torch

    from ..core.engine import explain

    if not loaded:
        return []
    layer: str | list[str] = request.layers if len(request.layers) > 1 else request.layers[0]

    def attempt(group: list[LoadedImage]) -> tuple[Explanation, float]:
        began = time.perf_counter()
        x = torch.cat([entry.x for entry in group]).to(device)
        result = explain(model, x, methods, layer, request.target, **request.calls, strict=False)
        for key, reason in result.skipped.items():
            _skip(state, reporter, key, reason)
        for text in (name_images(w, [entry.item for entry in group]) for w in result.warnings):
            if text not in state.warnings:
                state.warnings.append(text)
                reporter.warning(text)
        return result, time.perf_counter() - began

    try:
        return [(loaded, attempt(loaded))]
    except UsageError:
        raise  # the request's fault (no method can run), not an image's: a ValueError too
    except (RuntimeError, ValueError) as err:
        if len(loaded) == 1:
            log.debug("explain failed", exc_info=True)
            return [(loaded, f"{type(err).__name__}: {err}")]
    results: list[tuple[list[LoadedImage], Any]] = []
    for entry in loaded:
        results.extend(explain_groups(model, [entry], methods, request, device, state, reporter))
    return results


def _skip(state: JobState, reporter: Reporter, key: str, reason: str) -> None:
    if key not in state.skipped:
        state.skipped[key] = reason
        reporter.method_skipped(key, reason)
