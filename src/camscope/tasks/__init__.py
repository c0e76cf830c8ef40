"""Explaining models that are not classifiers: detectors, segmentation and embedding models. The
library's targets (:mod:`camscope.core.detection`, :mod:`camscope.core.segmentation`,
:mod:`camscope.core.similarity`) say what a map explains; this room is what the commands share to
use them: :class:`TaskRequest` (the choices as plain values) and :func:`prepare_task` (the class
names, the mask and the reference embeddings read once; then each image's target and what its
maps explain). ``camscope explain`` (pictures and ``--format parquet``) and the viewer call it.
"""

from __future__ import annotations

from .prepare import PreparedTask, prepare_task
from .request import TASK_CHOICES, TaskRequest

__all__ = ["TASK_CHOICES", "PreparedTask", "TaskRequest", "prepare_task"]
