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

from ..errors import NothingToExplain, UsageError
from .job import FileJob, LoadedImage
from .plan import IMAGE_FORMATS, ImagePlan, NpyFile, PictureFile, PictureOptions, new_plan

if TYPE_CHECKING:
    from PIL import Image

    from ..core.result import Explanation
    from ..data.dataset import Sample
    from ..data.walk import Walk
    from ..models import ModelSpec
    from ..tasks import PreparedTask
    from ..viz import Box

log = logging.getLogger(__name__)


def explain_task_image(
    job: FileJob, task: PreparedTask, entry: LoadedImage, walk: Walk[Any]
) -> None:
    """Explain one image for ``task`` (each image has its own boxes, region or reference: one
    image per call) and write its pictures; its record goes to ``job.state``."""
    from ..core.engine import explain

    item, image, request = entry.item, entry.image, job.request
    began = time.perf_counter() - entry.seconds
    target = task.target((image.width, image.height))
    x = entry.x.to(job.loaded.device)
    try:
        result = explain(
            job.loaded.model, x, request.methods, request.layer, target, **request.calls
        )
    except NothingToExplain as err:  # no box above the threshold, no class pixel
        _nothing(job, item, image, task, str(err), began)
        return
    except UsageError:
        raise  # the request's fault: every image would fail alike
    except (RuntimeError, ValueError) as err:
        log.debug("explain failed", exc_info=True)
        reason = f"{type(err).__name__}: {err}"
        walk.skip(item, reason)
        job.fail(item, reason, time.perf_counter() - began)
        return
    job.said(result, result.warnings)
    entries = task.describe(target, result, 0, (image.width, image.height))
    spec, options = job.loaded.spec, job.writer.options
    plan = plan_task_image(item, image, result, spec, request.methods, options, task, entries)
    job.submit(plan, result, time.perf_counter() - began)


def _nothing(
    job: FileJob, item: Sample, image: Image.Image, task: PreparedTask, note: str, began: float
) -> None:
    job.reporter.warning(f"{item.source}: {note}")
    job.state.records.append(
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

    from .. import viz
    from ..methods import get_method

    ext = IMAGE_FORMATS[options.image_format]
    display = viz.to_display_rgb(image, options.max_side)
    drawn = [m for m in methods if m in result.maps]
    count = len(entries)
    plan = new_plan(item, image, display, result, drawn, entries, [], "none", task.task)
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
        legend = "relevance, each map scaled to its own maximum"
        plan.set_grid(rows, ext, spec.name, result.layer_names, legend, task.task)
    return plan


def _suffix(task: str, k: int, count: int, agnostic: bool) -> str:
    if agnostic or (task != "detection" and count == 1):
        return ""
    return f".box{k}" if task == "detection" else f".ref{k}"
