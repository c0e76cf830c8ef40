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

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models.recipe import ModelRecipe

__all__ = ["DatasetJob", "JobResult", "ModelRecipe", "RayOptions"]

if TYPE_CHECKING:
    from ..tasks import TaskRequest


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
    # None: measured on the first batches (local backend, camscope.batch.tuning), 32 on Ray
    batch_size: int | None = None
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
    # Local backend: decoding processes beside the model, and the model's torch threads while
    # the job runs (then restored). None: measured on the first batches and kept up to date
    # (camscope.batch.tuning: decoding against model time per image, the cores, the device).
    decode_workers: int | None = None
    torch_threads: int | None = None
    precision: str = "fp32"  # the forward under autocast: fp32, bf16, fp16 (CUDA); maps in fp32
    compile: bool = False  # torch.compile the trunk before the explained layer (local and Ray)
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


RAY_BATCH_SIZE = 32  # Ray's batches (the local backend measures its own)
