"""``camscope explain``: heat maps for images, several methods from one forward/backward pass.

For every image this writes, into ``--out`` (``--image-format`` png, jpg or webp):

* ``<stem>.<method>.png``: the map over the image, at most ``--max-side`` pixels on the longer side
  (default 1024; 0 keeps the image's own size; guided methods: the signed guided gradients as a
  colour image); with top-k targets one file per class, ``<stem>.<method>.<class>.png``
  (class-agnostic methods: one file); ``--no-overlays`` leaves them out;
* ``<stem>.grid.png``: the input and one panel per method, under a line naming the explained class
  and its probability; one row per layer when several layers are given (plus their mean), one row
  per class for top-k (the classes share one scale per method unless ``--class-scale own``);
  rows wrap after six panels; ``--no-grid`` leaves it out;
* with ``--save-npy``: ``<stem>.<method>[.<class>].npy``, float32 maps in [0, 1] at the model
  input's size (``--npy-size model``, default), each layer's (``layer``) or the image's
  (``image``);
* ``summary.json``: the model, its preprocessing, and for each image its top-5 classes, the
  explained class(es), layers, methods, files, seconds, error (if any), skipped methods and, for
  DICOM/NIfTI, the pixel spacing. It is written also when the run is interrupted (Ctrl-C).

Detectors, segmentation and embedding models (``--task``; automatic for torchvision's detectors
and segmentation models) get one map per box, class region or reference image, with the boxes
drawn (docs/tasks.md); ``--concepts`` adds ``<stem>.concepts.png``, DFF's concepts of the layer
with their top classes.

Unreadable images (and images whose files cannot be written) are reported on stderr and in
``summary.json`` and skipped; a method that cannot explain this model is reported and skipped;
the exit code is then 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.progress import Progress, shown
from ..errors import UsageError
from ._common import (
    add_max_pixels_argument,
    add_method_option_arguments,
    echo,
    methods_within_budget,
    parse_layers,
    parse_method_options,
    parse_methods,
    positive_int,
    split_list,
    warn,
)
from ._dataset import add_dataset_arguments, run_dataset, wants_dataset
from ._inputs import add_input_arguments
from ._model import (
    ExplainMode,
    ModelOptions,
    PreprocessingOptions,
    add_explain_mode_arguments,
    add_model_arguments,
    add_preprocessing_arguments,
    add_task_arguments,
    task_request,
)
from ._pictures import add_picture_arguments

if TYPE_CHECKING:
    import torch

    from ..models import ModelSpec
    from ..pictures.job import JobState
    from ..tasks import PreparedTask, TaskRequest

log = logging.getLogger(__name__)

_EPILOG = """\
targets:
  top1 (default), top5, topk:K   the model's own top classes (one map per class for k > 1)
  285                            a class index
  "tabby cat"                    a class name (or one of its comma-separated synonyms)

layers:
  auto (default), first, middle, last, conv:N, or module names from `camscope layers MODEL`;
  repeat --layer or give a comma list to fuse several layers (mean of their maps)

examples:
  camscope explain cat.jpg dog.png --method gradcam,gradcam++,layercam --out out/pets
  camscope explain photos/ --target top3 --save-npy --no-overlays
  camscope explain --model resnet50 --layer layer3,layer4 --colormap jet
  camscope explain cat.jpg -m scorecam,ablationcam -O batch_size=16 -O precision=bfloat16
  camscope explain scan.dcm --model my_models:chest_net --window 40,400 --class-names labels.txt
  camscope explain street.jpg --model fasterrcnn_resnet50_fpn --box-threshold 0.5
  camscope explain street.jpg --model fcn_resnet50 --class person --region person.png
  camscope explain a.jpg --model my_models:embedder --task similarity --reference b.jpg
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "explain",
        help="write CAM heat maps for images (default: the demo images)",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files (also DICOM, NIfTI), folders or URLs (default: the four demo images)",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--method",
        "-m",
        default="gradcam",
        metavar="NAMES",
        help="comma-separated CAM methods, or 'all' (default gradcam; see `camscope methods`)",
    )
    parser.add_argument(
        "--layer",
        "-l",
        action="append",
        default=None,
        metavar="LAYER",
        help="layer(s) to explain, repeatable or comma-separated (default auto)",
    )
    parser.add_argument(
        "--target",
        "-t",
        default="top1",
        metavar="T",
        help="class to explain: top1, top5, topk:K, a class index or a class name (default top1)",
    )
    parser.add_argument(
        "--out", "-o", type=Path, default=Path("out/explain"), metavar="DIR", help="output folder"
    )
    parser.add_argument(
        "--aug-smooth",
        action="store_true",
        help="average each map over the image, its mirror image and two rescaled copies (4 versions: "
        "about 4x the passes, counted in the pass budget)",
    )
    parser.add_argument(
        "--eigen-smooth",
        action="store_true",
        help="use the first principal component of the weighted activations",
    )
    add_method_option_arguments(parser)
    add_explain_mode_arguments(parser)
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        metavar="B",
        help="images per forward/backward pass (default 1)",
    )
    add_picture_arguments(parser)
    add_max_pixels_argument(parser)
    add_input_arguments(parser)
    add_preprocessing_arguments(parser)
    add_task_arguments(parser)
    add_dataset_arguments(parser)
    parser.set_defaults(run=run)
    return parser


@dataclass(frozen=True)
class ExplainOptions:
    """``camscope explain`` options as plain typed values (no argparse past this point)."""

    images: list[str] = field(default_factory=list)
    model: ModelOptions = field(default_factory=ModelOptions)
    preprocessing: PreprocessingOptions = field(default_factory=PreprocessingOptions)
    methods: str = "gradcam"
    layers: list[str] = field(default_factory=list)
    target: str = "top1"
    out: Path = Path("out/explain")
    save_npy: bool = False
    npy_size: str = "model"
    colormap: str = "inferno"
    alpha: float = 0.5
    max_side: int = 1024
    grid: bool = True
    overlays: bool = True
    image_format: str = "png"
    class_scale: str = "shared"
    max_pixels: int | None = None
    timeout: float | None = None
    window: tuple[float, float] | None = None
    batch_size: int = 1
    aug_smooth: bool = False
    eigen_smooth: bool = False
    method_options: dict[str, Any] = field(default_factory=dict)
    explain_mode: ExplainMode = field(default_factory=ExplainMode)
    task: TaskRequest | None = None  # detection, segmentation, similarity (None: classify)
    concepts: bool = False  # also <stem>.concepts.png: DFF's concepts and their classes


def run(args: argparse.Namespace) -> int:
    if wants_dataset(args):
        return run_dataset(args)
    options = ExplainOptions(
        images=list(args.images),
        model=ModelOptions.from_args(args),
        preprocessing=PreprocessingOptions.from_args(args),
        methods=args.method,
        layers=split_list(args.layer),
        target=args.target,
        out=args.out,
        save_npy=bool(args.save_npy),
        npy_size=args.npy_size,
        colormap=args.colormap,
        alpha=args.alpha,
        max_side=args.max_side,
        grid=not args.no_grid,
        overlays=not args.no_overlays,
        image_format=args.image_format,
        class_scale=args.class_scale,
        max_pixels=args.max_pixels,
        timeout=args.timeout,
        window=args.window,
        batch_size=args.batch_size,
        aug_smooth=bool(args.aug_smooth),
        eigen_smooth=bool(args.eigen_smooth),
        method_options=parse_method_options(args.option),
        explain_mode=ExplainMode.from_args(args),
        task=task_request(args),
        concepts=bool(args.concepts),
    )
    return explain_images(options)


class _Reporter:
    """Prints what the job reports: one line per problem, names shown safely."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def input_failed(self, source: str, reason: str) -> None:
        self.progress.write(f"camscope explain: skipped {shown(source)}: {shown(reason)}")

    def method_skipped(self, key: str, reason: str) -> None:
        method, _, layer = key.partition("@")  # the engine's "method@layer" for one layer
        what = f"{shown(method)} at layer {shown(layer)}" if layer else shown(method)
        self.progress.write(f"camscope explain: skipped method {what}: {shown(reason)}")

    def warning(self, text: str) -> None:
        self.progress.write(f"camscope explain: warning: {shown(text)}")


def explain_images(options: ExplainOptions) -> int:
    """Run the whole command; returns 0, 1 when some images failed or methods were skipped,
    130 when interrupted (``summary.json`` then lists what was done)."""
    import torch

    from .. import viz
    from ..core.layers import resolve_layers
    from ..core.targets import parse_topk
    from ..data.classes import parse_target
    from ..data.dataset import LoadOptions
    from ..data.inputs import open_images
    from ..io import model_channels
    from ..outputs import prepare_output
    from ..pictures.files import PictureWriter
    from ..pictures.job import JobState, PictureRequest, explain_to_files
    from ..pictures.plan import PictureOptions
    from ._model import apply_preprocessing, load_model

    # Everything that can be checked without the model is checked before loading it.
    methods = parse_methods(options.methods)
    layer = parse_layers(options.layers)
    viz.check_colormap(options.colormap)
    if not 0.0 <= options.alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1; got {options.alpha}")
    prepare_output(options.out, reserved=("summary.json",))
    items = list(open_images(options.images).items)

    model, spec, device = load_model(options.model)
    spec, notes = apply_preprocessing(model, spec, options.preprocessing)
    for note in notes:
        sys.stderr.write(f"camscope explain: note: {note}\n")
    task = _prepare_task(options, model, spec, device)
    target: str | int = "top1"
    if task is None:
        target = parse_target(options.target, spec.class_names, model=spec.name, what="--target")
    dummy = torch.zeros(1, model_channels(spec), *spec.input_size, device=device)
    layer_names = [name for name, _ in resolve_layers(model, layer, dummy)]
    choice = methods_within_budget(
        options.methods,
        methods,
        model,
        layer_names,
        dummy,
        targets_per_image=parse_topk(target) or 1 if isinstance(target, str) else 1,
        method_options=options.method_options,
        allow_slow=options.explain_mode.allow_slow,
        budget=options.explain_mode.pass_budget,
        aug_smooth=options.aug_smooth,
    )
    for name, why in choice.left_out.items():
        warn(f"camscope explain: left out {name}: {why}")
    for note in choice.notes:
        warn(f"camscope explain: {note}")
    methods = choice.methods
    log.info("model %s, layers %s, methods %s, target %r", spec.name, layer_names, methods, target)

    pictures = PictureOptions(
        colormap=options.colormap,
        alpha=options.alpha,
        max_side=options.max_side or None,
        grid=options.grid,
        overlays=options.overlays,
        image_format=options.image_format,
        save_npy=options.save_npy,
        npy_size=options.npy_size,
        class_scale=options.class_scale,
    )
    progress = Progress(len(items), "camscope explain")
    request = PictureRequest(
        methods, layer_names, target, _call_options(options, progress), options.batch_size
    )
    load = LoadOptions(options.max_pixels, options.timeout, options.window)
    state = JobState()
    writer, reporter = PictureWriter(options.out, pictures), _Reporter(progress)
    try:
        if task is None:
            explain_to_files(
                model, spec, device, items, request, load, writer, state, reporter, progress
            )
        else:
            from ..pictures.tasks import explain_task_to_files

            args = (model, spec, device, items, request, task, load, writer, state, reporter)
            explain_task_to_files(*args, progress=progress)
        if options.concepts:
            from ..pictures.concepts import add_concepts

            add_concepts(
                *(model, spec, device, items, layer_names, options.method_options, load),
                *(options.out, pictures, state, reporter),
                multilabel=options.explain_mode.multilabel,
            )
    except KeyboardInterrupt:
        progress.close()
        _write_summary(
            options,
            spec,
            device,
            choice.methods,
            layer_names,
            state,
            interrupted=True,
            left_out=choice.left_out,
            task=task,
        )
        sys.stderr.write(
            f"camscope explain: interrupted after {len(state.records)} of {len(items)} image(s); "
            f"{shown(options.out / 'summary.json')} lists them\n"
        )
        return 130
    progress.close()
    _write_summary(
        options,
        spec,
        device,
        choice.methods,
        layer_names,
        state,
        interrupted=False,
        left_out=choice.left_out,
        task=task,
    )
    written = sum(len(r["files"]) for r in state.records)
    done = len(state.records) - state.failed
    skipped = ""
    if state.skipped:
        keys = (key.replace("@", " at layer ", 1) for key in sorted(state.skipped))
        skipped = f"; skipped {shown(', '.join(keys))}"
    echo(
        f"explained {done} of {len(state.records)} image(s) with "
        f"{', '.join(m for m in methods if m not in state.skipped)}: {written} file(s) in "
        f"{shown(options.out)}/"
        + (f"; {state.failed} failed (see stderr and summary.json)" if state.failed else "")
        + skipped
    )
    return 1 if state.failed or state.skipped else 0


def _write_summary(
    options: ExplainOptions,
    spec: ModelSpec,
    device: torch.device,
    methods: list[str],
    layer_names: list[str],
    state: JobState,
    *,
    interrupted: bool,
    left_out: dict[str, str],
    task: PreparedTask | None = None,
) -> None:
    from ..outputs import write_atomic

    summary = {
        "camscope": _version(),
        "model": spec.name,
        "spec": spec.to_dict(),
        "device": str(device),
        "methods": methods,
        "skipped": dict(state.skipped),
        "layer": layer_names[0] if len(layer_names) == 1 else layer_names,
        "target": options.target,
        "colormap": options.colormap,
        "alpha": options.alpha,
        "aug_smooth": options.aug_smooth,
        "eigen_smooth": options.eigen_smooth,
        "method_options": options.method_options,
        "methods_left_out": left_out,
        "pictures": {
            "max_side": options.max_side or None,
            "image_format": options.image_format,
            "grid": options.grid,
            "overlays": options.overlays,
            "class_scale": options.class_scale,
            "npy_size": options.npy_size if options.save_npy else None,
        },
        "preprocessing": {k: v for k, v in asdict(options.preprocessing).items() if v is not None},
        "warnings": list(state.warnings),
        "interrupted": interrupted,
        "images": state.records,
    }
    if task is not None:  # absent for classifiers, as before
        summary["task"] = task.task
        summary["task_options"] = asdict(task.request)
    if options.concepts:
        summary["concepts"] = True
    text = json.dumps(summary, indent=2, default=str) + "\n"
    write_atomic(options.out / "summary.json", text)


def _prepare_task(
    options: ExplainOptions, model: Any, spec: ModelSpec, device: torch.device
) -> PreparedTask | None:
    """The task of a detector, segmentation or embedding model (None: classify), with the
    options that only classifiers take refused."""
    from ..tasks import prepare_task

    if options.task is None:
        return None
    task = prepare_task(options.task, model, spec, device, max_pixels=options.max_pixels)
    if task is None:
        return None
    if options.target != "top1":
        raise UsageError(
            f"--target is for classifiers; the {task.task} task says what it explains with "
            "--box/--box-threshold, --class/--region or --reference (docs/tasks.md)"
        )
    if options.aug_smooth and task.task != "similarity":
        raise UsageError(
            f"--aug-smooth flips and rescales the image, which moves the {task.task} task's "
            "boxes and regions; leave it out"
        )
    if options.concepts:
        raise UsageError("--concepts names DFF's concepts by class: it is for classifiers")
    return task


def _version() -> str:
    from .. import __version__

    return __version__


def _call_options(options: ExplainOptions, progress: Progress) -> dict[str, Any]:
    """Keyword arguments of :func:`camscope.explain`; long perturbation runs report their passes
    on stderr, as a bar on a terminal, otherwise as lines of :class:`Progress` (the library
    itself prints nothing)."""
    method_options = dict(options.method_options)
    method_options.setdefault("progress", True if sys.stderr.isatty() else progress.passes)
    return {
        "aug_smooth": options.aug_smooth,
        "eigen_smooth": options.eigen_smooth,
        "method_options": method_options,
        **options.explain_mode.explain_kwargs(),
    }
