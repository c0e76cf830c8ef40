"""The settings of a data-set job as plain values.

:class:`DatasetJob` is what :func:`camscope.batch.pipeline.run_dataset_job` runs; the CLI builds
one from ``camscope explain --format parquet`` options, library users build it directly, and both
get the same policies: ``methods=("all",)`` under the pass budget
(:func:`camscope.methods.choose_methods`), a class name as the target, the model's preprocessing
overrides (:class:`camscope.models.ModelRecipe`) and the torch threads
(:func:`default_torch_threads`). The model is described by a
:class:`~camscope.models.ModelRecipe` (re-exported here).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models.recipe import ModelRecipe

__all__ = ["DatasetJob", "JobResult", "ModelRecipe", "RayOptions"]

if TYPE_CHECKING:
    from ..tasks import TaskRequest

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
FAILURES_IN_SUMMARY = 100


@dataclass(frozen=True)
class RayOptions:
    """``--backend ray``: where the cluster is and how many model actors to run.

    ``address=None`` uses the Ray instance this process already started, or starts a local one;
    ``"auto"`` joins the cluster of the machine (``ray start``); ``"ray://host:10001"`` a remote
    one through Ray Client.
    """

    address: str | None = None
    num_workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    decode_cpus: float = 1.0  # CPUs reserved by each decoding task


@dataclass(frozen=True)
class DatasetJob:
    """Everything a data-set job needs, as plain values (the CLI builds one from its options)."""

    source: str | Path
    out: str | Path
    model: ModelRecipe = field(default_factory=ModelRecipe)
    methods: tuple[str, ...] = ("gradcam",)  # names, or ("all",): every method under the budget
    layers: tuple[str, ...] = ("auto",)
    target: str | int = "top1"  # top1, top5, topk:K, a class index or a class name
    batch_size: int = 32
    shard_size: int = 1024
    map_size: tuple[int, int] | None = None
    save_png: bool = False
    save_boxes: bool = False
    save_masks: bool = False
    colormap: str = "inferno"
    alpha: float = 0.5
    max_pixels: int | None = None
    timeout: float | None = None  # total seconds for one URL download (None: io's default)
    window: tuple[float, float] | None = None  # DICOM/NIfTI grey-value window (centre, width)
    decode_workers: int | None = None  # default: cores - 1, at most 4
    # torch threads of the model while a local job runs (then restored); None: the cores the
    # decoding processes leave (default_torch_threads): an OpenMP pass whose threads share cores
    # with the decoding processes waits at every barrier for the thread that was preempted.
    torch_threads: int | None = None
    aug_smooth: bool = False
    eigen_smooth: bool = False
    method_options: dict[str, Any] = field(default_factory=dict)
    mode: str = "eval"  # explain's mode: "eval", or "as-is" (with ModelRecipe(keep_mode=True))
    multilabel: bool = False  # independent sigmoids: probabilities and top-5 by sigmoid
    allow_slow: bool = False  # methods=("all",) also runs the methods over the pass budget
    pass_budget: int | None = None  # passes per image of ("all",); None: DEFAULT_PASS_BUDGET
    resume: bool = False
    # with resume: explain again the committed inputs whose file or source changed since (their
    # old rows are removed first), instead of refusing the resume (camscope.batch.resume)
    refresh_changed: bool = False
    backend: str = "local"
    ray: RayOptions = field(default_factory=RayOptions)
    # detection, segmentation or similarity (camscope.batch.task_rows); None: classify
    task: TaskRequest | None = None


@dataclass
class JobResult:
    """What a job did: the summary written to ``summary.json`` and the exit status it implies."""

    out: Path
    summary: dict[str, Any]

    @property
    def failed(self) -> int:
        return int(self.summary["counts"]["failed"])

    @property
    def exit_code(self) -> int:
        """0 when every input has its maps, 1 when some failed (as ``camscope explain``)."""
        return 1 if self.failed else 0


def default_decode_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def default_torch_threads(decode_workers: int | None) -> int:
    """The cores the decoding processes leave to the model (at least one)."""
    workers = default_decode_workers() if decode_workers is None else decode_workers
    return max(1, (os.cpu_count() or 1) - workers)
