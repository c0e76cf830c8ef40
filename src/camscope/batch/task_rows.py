"""The rows of a data-set job for detectors, segmentation and embedding models.

:class:`~camscope.batch.rows.ExplainStep` hands a batch here when its settings carry a task
(:class:`camscope.tasks.TaskRequest`). Each image is explained in a call of its own (a
detector's boxes differ from image to image, so a batch would pad them with empty maps), and
gives one row per layer, method and explained target (:meth:`camscope.tasks.PreparedTask.describe`):

* detection: one row per box: ``rank`` is the box's index, ``target`` and ``label`` its class,
  ``score`` its class score and ``object_box`` the box (``x0, y0, x1, y1`` in the image's
  pixels);
* segmentation: one row, ``score`` the class's logits summed over the region;
* similarity: one row per reference image, ``score`` the cosine similarity, ``label`` names the
  reference.

``probability`` and ``top5`` are empty (no class probabilities). An image with nothing to
explain (no detection above the threshold, no pixel of the class) gets an error row saying so:
it is listed in ``errors.parquet`` and tried again by ``--resume``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import NothingToExplain, UsageError

if TYPE_CHECKING:
    from ..models import ModelSpec
    from ..tasks import PreparedTask, TaskRequest
    from .decode import DecodedBatch

log = logging.getLogger(__name__)

NOTHING = "nothing to explain: "


def task_rows(step: Any, task: PreparedTask, batch: DecodedBatch) -> dict[str, list[Any]]:
    """The columns of one batch's rows (:func:`camscope.batch.parquet.step_schema`);
    ``step`` is the :class:`~camscope.batch.rows.ExplainStep` (its model, settings, schema and
    row helpers; not imported here, which would make an import circle)."""
    columns: dict[str, list[Any]] = {name: [] for name in step.schema.names}
    for i in range(len(batch)):
        if batch.errors[i] is not None:
            step.add_error(columns, batch, i, str(batch.errors[i]))
            continue
        size = (int(batch.widths[i]), int(batch.heights[i]))
        target = task.target(size)
        try:
            result = step.explain_inputs(batch.x[i : i + 1], target)
        except NothingToExplain as err:
            step.add_error(columns, batch, i, NOTHING + str(err))
            continue
        except UsageError:
            raise  # a bad layer, method or class: every image alike, the job stops
        except (RuntimeError, ValueError) as err:
            log.debug("explain failed on %s", batch.ids[i], exc_info=True)
            step.add_error(columns, batch, i, f"{type(err).__name__}: {err}")
            continue
        targets = [
            {
                "target": int(e["class"]),
                "label": e["label"],
                "score": float(e["score"]),
                "object_box": e.get("box"),
            }
            for e in task.describe(target, result, 0, size)
        ]
        step.add_rows(columns, batch, i, result, 0, targets)
    return columns


def job_task(task: TaskRequest | None, spec: ModelSpec, job: Any) -> str | None:
    """The task a data-set job runs for a model of ``spec`` (None: classification), with the
    options a task job does not take refused (``job``: a :class:`~camscope.batch.DatasetJob`)."""
    if task is None:
        return None
    name = task.resolve(spec.task)
    if name == "classification":
        return None
    refused = {
        "--box (a data-set job explains the boxes above --box-threshold)": bool(task.boxes),
        "--save-png (draw them with `camscope explain` or `camscope maps export`)": job.save_png,
        "--save-boxes and --save-masks (weak labels of class maps)": job.save_boxes
        or job.save_masks,
        "--aug-smooth": job.aug_smooth and name != "similarity",
    }
    wrong = [what for what, bad in refused.items() if bad]
    if wrong:
        raise UsageError(f"a {name} data-set job does not take {'; '.join(wrong)}")
    if job.target not in ("top1", "topk:1"):
        raise UsageError(f"--target is for classifiers; the {name} task explains what --task says")
    return name
