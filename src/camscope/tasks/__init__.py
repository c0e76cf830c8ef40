"""Explaining models that are not classifiers: detectors, segmentation and embedding models.

The library's targets (:mod:`camscope.core.detection`, :mod:`camscope.core.segmentation`,
:mod:`camscope.core.similarity`) say what a map explains; this room is what the commands share
to use them: :class:`TaskRequest` (the choices as plain values: the task, the box threshold or
boxes, the class, the region mask, the reference images) and :func:`prepare_task`, which reads
the class names, the mask and the reference embeddings once and then makes each image's target
and describes what was explained (boxes in the image's pixels, scores, labels). ``camscope
explain`` (pictures and ``--format parquet``) and the viewer call it.

This room imports ``errors``, ``core``, ``models`` (the spec), ``io`` (images and masks) and
``data`` (class names); ``pictures``, ``batch``, ``serve`` and ``cli`` import it.
"""

from __future__ import annotations

from .prepare import PreparedTask, prepare_task
from .request import TASK_CHOICES, TaskRequest

__all__ = ["TASK_CHOICES", "PreparedTask", "TaskRequest", "prepare_task"]
