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
from pathlib import Path
from typing import Any

from ..pictures.plan import CLASS_SCALES, NPY_SIZES
from . import options, values
from ._common import command_parser, echo, warn
from ._dataset import add_dataset_arguments, run_dataset, wants_dataset

_HELP = "write CAM heat maps for images (default: the demo images)"
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
    parser = command_parser(subparsers, "explain", _HELP, __doc__, _EPILOG)
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files (also DICOM, NIfTI), folders or URLs (default: the four demo images)",
    )
    options.add(
        parser,
        *options.MODEL,
        "method",
        "layer",
        "target",
        "out",
        "option",
        *options.EXPLAIN_MODE,
        "batch_size",
        "max_pixels",
        *options.INPUTS,
        "no_progress",
        *options.PREPROCESSING,
        *options.TASKS,
        out={"default": Path("out/explain")},
        batch_size={
            "default": None,
            "help": "images per pass (default 1; with --format parquet measured on the first batches)",
        },
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
    add_picture_arguments(parser)
    add_dataset_arguments(parser)
    return parser


def add_picture_arguments(parser: argparse.ArgumentParser) -> None:
    """What is drawn and written for each image (``--format png``)."""
    group = parser.add_argument_group("pictures and files")
    options.add(group, "colormap", "alpha")
    add = group.add_argument
    png_only = [
        add(
            "--max-side",
            type=options.non_negative_int,
            default=1024,
            metavar="PX",
            help="longer side of the overlay files (default 1024; 0: the image's own size)",
        ),
        add("--no-grid", action="store_true", help="do not write <stem>.grid.png"),
        add("--no-overlays", action="store_true", help="do not write one overlay file per method"),
        add(
            "--image-format",
            choices=("png", "jpg", "webp"),
            default="png",
            help="format of the overlay and grid files (default png)",
        ),
        add(
            "--class-scale",
            choices=CLASS_SCALES,
            default="shared",
            help="top-k grids: one scale per method across the classes (default) or each map on "
            "its own",
        ),
        add("--save-npy", action="store_true", help="also save each map as float32 .npy in [0, 1]"),
        add(
            "--concepts",
            action="store_true",
            help="also write <stem>.concepts.png: Deep Feature Factorization's concepts of the "
            "(first) layer, each map with the classes it scores highest (-O num_concepts=K, "
            "default 5)",
        ),
        add(
            "--npy-size",
            choices=NPY_SIZES,
            default="model",
            help="resolution of the .npy maps: the layer's, the model input's (default) or the image's",
        ),
    ]
    # a data-set job refuses these rather than ignore them (its overlays are --save-png's, its
    # maps are in the shards)
    parser.set_defaults(_png_only={action.dest: action.default for action in png_only})


def run(args: argparse.Namespace) -> int:
    """Returns 0, 1 when some images failed or methods were skipped, 130 when interrupted
    (``summary.json`` then lists what was done)."""
    if wants_dataset(args):
        return run_dataset(args)
    from .. import viz
    from ..data.dataset import LoadOptions
    from ..data.inputs import open_images
    from ..data.progress import Progress, shown
    from ..methods import parse_methods
    from ..outputs import prepare_output
    from ..pictures.job import JobState, LineReporter
    from ..pictures.plan import PictureOptions
    from ..pictures.run import PictureJob, run_picture_job

    # Everything that can be checked without the model is checked before loading it.
    parse_methods(args.method)
    viz.check_colormap(args.colormap)
    settings = values.explain_settings(args)  # -O keys checked before the model loads
    task = values.task_request(args)
    prepare_output(args.out, reserved=("summary.json",))
    items = list(open_images(args.images).items)
    loaded = values.model_recipe(args).load(hints="cli")
    for note in loaded.notes:
        warn(f"camscope explain: note: {note}")
    job = PictureJob(
        out=args.out,
        methods=args.method,
        layers=values.split_list(args.layer),
        target=args.target,
        batch_size=args.batch_size or 1,
        **settings,
        pictures=PictureOptions(
            max_side=args.max_side or None,
            grid=not args.no_grid,
            overlays=not args.no_overlays,
            **values.same_named(args, "colormap alpha image_format save_npy npy_size class_scale"),
        ),
        load=LoadOptions(args.max_pixels, args.timeout, args.window),
        preprocessing=values.preprocessing(args),
        task=task,
        concepts=bool(args.concepts),
    )
    state = JobState()
    progress = Progress(len(items), "camscope explain", enabled=not args.no_progress)
    try:
        with progress:
            result = run_picture_job(
                job, loaded, items, state, LineReporter(progress, "camscope explain"), progress
            )
    except KeyboardInterrupt:
        warn(
            f"camscope explain: interrupted after {len(state.records)} of {len(items)} image(s); "
            f"{shown(args.out / 'summary.json')} lists them"
        )
        return 130
    text = (
        f"explained {len(state.records) - state.failed} of {len(state.records)} image(s) with "
        f"{', '.join(m for m in result.methods if m not in state.skipped)}: {result.files} "
        f"file(s) in {shown(args.out)}/"
    )
    if state.failed:
        text += f"; {state.failed} failed (see stderr and summary.json)"
    if state.skipped:
        keys = (key.replace("@", " at layer ", 1) for key in sorted(state.skipped))
        text += f"; skipped {shown(', '.join(keys))}"
    echo(text)
    return result.exit_code
