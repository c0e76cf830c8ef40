"""``camscope explain`` as pictures, for the command and library callers: :func:`run_picture_job`.

It settles what to run the way every command does: a class-name target
(:func:`camscope.data.classes.parse_target`), the methods, ``all`` under the pass budget
(:func:`camscope.methods.choose_methods`); explains every input into files
(:func:`~camscope.pictures.job.explain_to_files`); and writes ``summary.json`` at the end, and
also when interrupted (Ctrl-C): the images finished by then keep their files and are listed, then
the ``KeyboardInterrupt`` goes on to the caller.

Example:
    >>> loaded = ModelRecipe("resnet18", random_init=True).load()  # doctest: +SKIP
    >>> state = JobState()  # doctest: +SKIP
    >>> run_picture_job(PictureJob(Path("out")), loaded, items, state)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.dataset import LoadOptions
from .files import PictureWriter
from .job import FileJob, JobState, PictureRequest, Reporter, explain_to_files
from .plan import PictureOptions
from .tasks import explain_task_image

if TYPE_CHECKING:
    from ..data.dataset import Sample
    from ..data.progress import Progress
    from ..models.recipe import LoadedModel
    from ..tasks import PreparedTask, TaskRequest


@dataclass(frozen=True)
class PictureJob:
    """What ``camscope explain`` (pictures) runs, as plain values.

    ``methods`` are names or ``"all"`` (every method within ``pass_budget`` passes per image,
    all of them with ``allow_slow``); ``layers`` empty means ``auto``; ``target`` is
    ``top1``/``top5``/``topk:K``, an index or a class name; ``mode``, ``multilabel``,
    ``aug_smooth``, ``eigen_smooth`` and ``method_options`` go to :func:`camscope.explain`;
    ``preprocessing`` is what the user overrode (recorded in ``summary.json``); ``task``
    explains a detector, segmentation or embedding model (:mod:`camscope.tasks`) and
    ``concepts`` adds DFF's concepts of each image (:mod:`camscope.pictures.concepts`)."""

    out: Path
    methods: str | Sequence[str] = "gradcam"
    layers: Sequence[str] = ()
    target: str | int = "top1"
    batch_size: int = 1
    aug_smooth: bool = False
    eigen_smooth: bool = False
    method_options: Mapping[str, Any] = field(default_factory=dict)
    mode: str = "eval"
    multilabel: bool = False
    allow_slow: bool = False
    pass_budget: int | None = None
    pictures: PictureOptions = field(default_factory=PictureOptions)
    load: LoadOptions = field(default_factory=LoadOptions)
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    task: TaskRequest | None = None  # detection, segmentation, similarity (None: classify)
    concepts: bool = False  # also <stem>.concepts.png: DFF's concepts and their classes


@dataclass
class PictureResult:
    """What the job explained: the methods it ran (after the budget), those it left out, the
    layers and the records of every image (``state``)."""

    state: JobState
    methods: list[str]
    layers: list[str]
    left_out: dict[str, str]
    task: PreparedTask | None = None

    @property
    def files(self) -> int:
        return sum(len(r["files"]) for r in self.state.records)

    @property
    def exit_code(self) -> int:
        """0, or 1 when some images failed or methods were skipped (as ``camscope explain``)."""
        return 1 if self.state.failed or self.state.skipped else 0


def run_picture_job(
    job: PictureJob,
    loaded: LoadedModel,
    items: list[Sample],
    state: JobState,
    reporter: Reporter,
    progress: Progress | None = None,
) -> PictureResult:
    """Explain ``items`` with the model ``loaded`` into files in ``job.out`` (which exists);
    ``state`` holds the records as images finish. Problems and notes go to ``reporter``."""
    from ..data.classes import parse_target
    from ..methods import choose_methods

    model, spec, device = loaded.model, loaded.spec, loaded.device
    task = _prepare_task(job, loaded)
    target: str | int = "top1"
    if task is None:
        target = parse_target(job.target, spec.class_names, model=spec.name, what="--target")
    layers = list(job.layers) or ["auto"]
    layer: str | list[str] = layers if len(layers) > 1 else layers[0]
    choice = choose_methods(
        job.methods,
        model,
        spec.example_input(device),
        layer,
        target=target,
        method_options=job.method_options,
        allow_slow=job.allow_slow,
        budget=job.pass_budget,
        aug_smooth=job.aug_smooth,
    )
    for text in choice.said:
        reporter.note(text)
    options = dict(job.method_options)
    if progress is not None and progress.enabled:
        options.setdefault("progress", True if sys.stderr.isatty() else progress.passes)
    calls = {
        "aug_smooth": job.aug_smooth,
        "eigen_smooth": job.eigen_smooth,
        "method_options": options,
        "mode": job.mode,
        "multilabel": job.multilabel,
    }
    request = PictureRequest(choice.methods, choice.layers, target, calls, job.batch_size)
    result = PictureResult(state, choice.methods, choice.layers, choice.left_out, task)
    work = FileJob(loaded, request, job.load, PictureWriter(job.out, job.pictures), state, reporter)
    alone = None if task is None else partial(explain_task_image, work, task)
    try:
        explain_to_files(work, items, progress, alone)
        if job.concepts:
            from .concepts import add_concepts

            add_concepts(work, items)
    except KeyboardInterrupt:
        write_summary(job, loaded, result, interrupted=True)
        raise
    write_summary(job, loaded, result, interrupted=False)
    return result


def write_summary(
    job: PictureJob, loaded: LoadedModel, result: PictureResult, *, interrupted: bool
) -> None:
    """``summary.json``: the model, its preprocessing, the settings and every image's record."""
    from ..outputs import camscope_version, write_atomic

    state, layers, pictures = result.state, result.layers, job.pictures
    summary = {
        "camscope": camscope_version(),
        "model": loaded.spec.name,
        "spec": loaded.spec.to_dict(),
        "device": str(loaded.device),
        "methods": result.methods,
        "skipped": dict(state.skipped),
        "layer": layers[0] if len(layers) == 1 else layers,
        "target": job.target,
        "batch_size": job.batch_size,
        "colormap": pictures.colormap,
        "alpha": pictures.alpha,
        "aug_smooth": job.aug_smooth,
        "eigen_smooth": job.eigen_smooth,
        "method_options": {
            k: v for k, v in job.method_options.items() if k not in ("progress", "output_adapter")
        },
        "methods_left_out": result.left_out,
        "pictures": {
            "max_side": pictures.max_side or None,
            "image_format": pictures.image_format,
            "grid": pictures.grid,
            "overlays": pictures.overlays,
            "class_scale": pictures.class_scale,
            "npy_size": pictures.npy_size if pictures.save_npy else None,
        },
        "preprocessing": {k: v for k, v in job.preprocessing.items() if v is not None},
        "warnings": list(state.warnings),
        "interrupted": interrupted,
        "images": state.records,
    }
    if result.task is not None:  # absent for classifiers, as before
        summary["task"] = result.task.task
        summary["task_options"] = asdict(result.task.request)
    if job.concepts:
        summary["concepts"] = True
    text = json.dumps(summary, indent=2, default=str) + "\n"
    write_atomic(job.out / "summary.json", text)


def _prepare_task(job: PictureJob, loaded: LoadedModel) -> PreparedTask | None:
    """The task of a detector, segmentation or embedding model (None: classify), with the
    settings that only classifiers take refused."""
    from ..errors import UsageError
    from ..tasks import prepare_task

    if job.task is None:
        return None
    model, spec, device = loaded.model, loaded.spec, loaded.device
    task = prepare_task(job.task, model, spec, device, max_pixels=job.load.max_pixels)
    if task is None:
        return None
    if job.target != "top1":
        raise UsageError(
            f"--target is for classifiers; the {task.task} task says what it explains with "
            "--box/--box-threshold, --class/--region or --reference (docs/tasks.md)"
        )
    if job.aug_smooth and task.task != "similarity":
        raise UsageError(
            f"--aug-smooth flips and rescales the image, which moves the {task.task} task's "
            "boxes and regions; leave it out"
        )
    if job.concepts:
        raise UsageError("--concepts names DFF's concepts by class: it is for classifiers")
    return task
