"""``camscope explain`` for detectors, segmentation and embedding models: one image per call,
one map per explained box, class region or reference (:mod:`camscope.tasks`).

For every image this writes, beside the usual files of :mod:`.plan`:

* detection: ``<stem>.boxes.<ext>``, the image with every explained box and its caption (``k:
  label score``); ``<stem>.<method>.box<k>.<ext>``, box ``k``'s map with that box drawn thick
  and the others thin; the grid has one row per box;
* segmentation: ``<stem>.<method>.<ext>``, the class's map over its region;
* similarity: ``<stem>.<method>.<ext>`` (``.ref<k>`` with several references).

The record of each image in ``summary.json`` says ``task`` and lists, in ``targets``, what each
map explains (:meth:`camscope.tasks.PreparedTask.describe`: class, label, score, and the box in
the image's pixels). An image with nothing to explain (no detection above the threshold or
matching the box, no pixel of the class: :class:`~camscope.errors.NothingToExplain`) is
recorded with no targets and a note, not as a failure.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..data.dataset import LoadOptions, Prepared, Sample
from ..data.walk import Walk
from ..errors import NothingToExplain, UsageError
from .files import PictureWriter
from .job import JobState, PictureRequest, Reporter, _fail
from .plan import IMAGE_FORMATS, ImagePlan, NpyFile, PictureFile, PictureOptions

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

    from ..core.result import Explanation
    from ..data.progress import Progress
    from ..models import ModelSpec
    from ..tasks import PreparedTask
    from ..viz import Box

log = logging.getLogger(__name__)


def explain_task_to_files(
    model: nn.Module,
    spec: ModelSpec,
    device: torch.device,
    items: list[Sample],
    request: PictureRequest,
    task: PreparedTask,
    load: LoadOptions,
    writer: PictureWriter,
    state: JobState,
    reporter: Reporter,
    progress: Progress | None = None,
) -> None:
    """Explain every item for ``task`` (one image per call: each has its own boxes, region or
    reference) and write its pictures; records go to ``state`` as images finish."""
    from ..core.engine import explain

    layer: str | list[str] = request.layers if len(request.layers) > 1 else request.layers[0]
    walk: Walk[Prepared] = Walk(
        items, spec=spec, options=load, batch_size=1, progress=progress,
        on_skip=reporter.input_failed,
    )  # fmt: skip
    try:
        for batch in walk:
            for outcome in batch.outcomes:
                item = outcome.sample
                if outcome.value is None:
                    _fail(state, item, outcome.error or "unreadable", outcome.seconds)
                    continue
                began = time.perf_counter() - outcome.seconds
                image, x = outcome.value.image, outcome.value.x.to(device)
                target = task.target((image.width, image.height))
                try:
                    result = explain(model, x, request.methods, layer, target, **request.calls)
                except NothingToExplain as err:  # no box above the threshold, no class pixel
                    _nothing(state, reporter, item, image, task, str(err), began)
                    continue
                except UsageError:
                    raise  # the request's fault: every image would fail alike
                except (RuntimeError, ValueError) as err:
                    log.debug("explain failed", exc_info=True)
                    reason = f"{type(err).__name__}: {err}"
                    walk.skip(item, reason)
                    _fail(state, item, reason, time.perf_counter() - began)
                    continue
                for key, reason in result.skipped.items():
                    if key not in state.skipped:
                        state.skipped[key] = reason
                        reporter.method_skipped(key, reason)
                for text in result.warnings:
                    if text not in state.warnings:
                        state.warnings.append(text)
                        reporter.warning(text)
                entries = task.describe(target, result, 0, (image.width, image.height))
                plan = plan_task_image(
                    item, image, result, spec, request.methods, writer.options, task, entries
                )
                record = writer.submit(plan)
                record["skipped"] = dict(result.skipped)
                record["warnings"] = list(result.warnings)
                record["seconds"] = round(time.perf_counter() - began, 4)
                state.records.append(record)
            for failed in writer.collect():
                state.failed += 1
                reporter.input_failed(failed["source"], str(failed["error"]))
    finally:
        for failed in writer.close():
            state.failed += 1
            reporter.input_failed(failed["source"], str(failed["error"]))


def _nothing(
    state: JobState,
    reporter: Reporter,
    item: Sample,
    image: Image.Image,
    task: PreparedTask,
    note: str,
    began: float,
) -> None:
    reporter.warning(f"{item.source}: {note}")
    state.records.append(
        {
            "source": item.source,
            "stem": item.stem,
            "size": [image.width, image.height],
            "task": task.task,
            "top5": [],
            "probability_kind": "none",
            "target": None,
            "targets": [],
            "note": note,
            "files": [],
            "seconds": round(time.perf_counter() - began, 4),
            "error": None,
        }
    )


def _display_boxes(
    entries: list[dict[str, Any]], image: Image.Image, display: Image.Image
) -> list[Box]:
    from .. import viz

    sx, sy = display.width / image.width, display.height / image.height
    return [
        viz.Box(
            (e["box"][0] * sx, e["box"][1] * sy, e["box"][2] * sx, e["box"][3] * sy),
            f"{e['index']}: {e['label']} {e['score']:.2f}",
        )
        for e in entries
        if "box" in e
    ]


def plan_task_image(
    item: Sample,
    image: Image.Image,
    result: Explanation,
    spec: ModelSpec,
    methods: list[str],
    options: PictureOptions,
    task: PreparedTask,
    entries: list[dict[str, Any]],
) -> ImagePlan:
    """The pictures and record of one image explained for ``task`` (image 0 of ``result``)."""
    import numpy as np

    from .. import io, viz
    from ..methods import get_method

    ext = IMAGE_FORMATS[options.image_format]
    display = viz.to_display_rgb(image, options.max_side)
    layer_names = [result.layer] if isinstance(result.layer, str) else list(result.layer)
    drawn = [m for m in methods if m in result.maps]
    count = len(entries)
    record: dict[str, Any] = {
        "source": item.source,
        "stem": item.stem,
        "size": [image.width, image.height],
        "display_size": [display.width, display.height],
        "task": task.task,
        "top5": [],
        "probability_kind": "none",
        "target": entries[0] if entries else None,
        "targets": entries,
        "layers": layer_names,
        "methods": drawn,
        "files": [],
        "seconds": 0.0,
        "error": None,
    }
    meta = io.image_meta(image)
    if meta:
        record["input"] = meta
    plan = ImagePlan(record=record, display=display)
    boxes = _display_boxes(entries, image, display)
    if boxes:
        plan.grid_picture = viz.draw_boxes(display, boxes)
        if options.overlays:
            rgb = np.asarray(plan.grid_picture)
            plan.pictures.append(PictureFile(f"{item.stem}.boxes.{ext}", rgb=rgb))
    rows: list[tuple[str, list[viz.Panel | None]]] = [(task.caption(e), []) for e in entries]
    for method in drawn:
        agnostic = not get_method(method).class_specific
        maps = result.maps[method][0].float().reshape(-1, *result.maps[method].shape[-2:])
        raw = result.raw[method][0]
        guided = raw.ndim == (4 if result.targets.ndim == 2 else 3)
        raw = raw.reshape(-1, *raw.shape[-3:]) if guided else raw
        for k in range(count):
            if agnostic and k > 0:
                rows[k][1].append(None)  # the same map for every box: drawn once
                continue
            suffix = _suffix(task.task, k, count, agnostic)
            picture = PictureFile(f"{item.stem}.{method}{suffix}.{ext}")
            picture.boxes, picture.highlight = boxes, (None if agnostic else k)
            title = method + ("\n(class-agnostic)" if agnostic else "")
            if guided:
                picture.rgb = viz.guided_to_rgb(raw[k].cpu().numpy())
                panel = viz.Panel(title, rgb=picture.rgb, signed=True)
            else:
                picture.heat = maps[k].cpu().numpy()
                panel = viz.Panel(title, heatmap=picture.heat)
            if options.overlays:
                plan.pictures.append(picture)
            rows[k][1].append(panel)
            if options.save_npy and not guided:
                size = (image.height, image.width) if options.npy_size == "image" else None
                heat = maps[k].cpu().numpy()
                plan.npys.append(NpyFile(f"{item.stem}.{method}{suffix}.npy", heat, size))
    if options.grid:
        plan.grid_name = f"{item.stem}.grid.{ext}"
        plan.grid_rows = rows
        layer_text = ", ".join(layer_names)
        plan.grid_title = (
            f"{viz.printable(item.stem)}  |  {viz.printable(spec.name)}  |  {task.task}  |  "
            f"layer: {viz.printable(layer_text if len(layer_text) <= 60 else f'{len(layer_names)} layers')}"
        )
        plan.heat_legend = "relevance, each map scaled to its own maximum"
    return plan


def _suffix(task: str, k: int, count: int, agnostic: bool) -> str:
    if agnostic or (task != "detection" and count == 1):
        return ""
    return f".box{k}" if task == "detection" else f".ref{k}"
