"""Every option that several commands take, declared once: :data:`OPTIONS` and :func:`add`.

A command composes the options it needs (``add(parser, *MODEL, "method", "out", ...)``); the
spelling, aliases, type, action and default of each come from here, so ``-m`` is ``--method`` in
every command that takes methods and ``--methods`` is its alias everywhere. A command may set only
what a declaration lists as its own (``per_command``: the output folder's default, the help of
``--method``, ...); anything else is refused when the parser is built, and
``tests/cli/test_options.py`` walks every subcommand's parser against these declarations.

:mod:`camscope.cli.values` turns the parsed options into the library's plain values. Nothing here
imports torch (``camscope --help`` stays fast).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tasks.request import TASK_CHOICES

DEFAULT_MODEL = "efficientnet_lite0"  # camscope.models.DEFAULT_MODEL, kept torch-free here
DEFAULT_TIMEOUT = 60.0  # camscope.io.DEFAULT_DEADLINE, kept import-free here


# ---------------------------------------------------------------------------------------------
# Types: each a value check that says what it expected


def _number(text: str, kind: type, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def bounded(
    kind: type, low: float, high: float = math.inf, *, above: bool = False, what: str
) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number in ``[low, high]`` (``(low, high]`` with ``above``);
    the message says ``what`` was expected."""

    def parse(text: str) -> Any:
        value = _number(text, kind, what)
        if not low <= value <= high or (above and value == low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text.strip()}")
        return kind(value)

    return parse


positive_int = bounded(int, 1, what="a whole number >= 1")
non_negative_int = bounded(int, 0, what="a whole number >= 0")
non_negative_float = bounded(float, 0, what="a number >= 0")
unit_float = bounded(float, 0, 1, what="a number between 0 and 1")
positive_seconds = bounded(float, 0, above=True, what="a positive number of seconds")
positive_float = bounded(float, 0, above=True, what="a positive number")


def number_list(text: str) -> tuple[float, ...]:
    """argparse type: ``0.5`` or ``0.485,0.456,0.406`` (finite numbers)."""
    return tuple(_number(part, float, "numbers separated by commas") for part in text.split(","))


def pixel_size(text: str) -> tuple[int, int]:
    """argparse type: ``256,320`` or ``256x320`` (height, width) or ``224`` (a square), each >= 1
    (``--input-size``, ``explain --map-size``)."""
    parts = [part.strip() for part in text.replace("x", ",").split(",") if part.strip()]
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected H,W or one size in pixels >= 1 (e.g. 56,56 or 224), got {text!r}"
        )
    return (values[0], values[-1])


def window_pair(text: str) -> tuple[float, float]:
    """argparse type: ``CENTRE,WIDTH`` with a positive finite width."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected CENTRE,WIDTH such as 40,400; got {text!r}")
    centre, width = (_number(p, float, "CENTRE,WIDTH such as 40,400") for p in parts)
    if width <= 0:
        raise argparse.ArgumentTypeError(
            f"the window width must be a positive number; got {text!r}"
        )
    return centre, width


def box_argument(text: str) -> tuple[float, float, float, float]:
    """argparse type: ``x0,y0,x1,y1`` in pixels, with x0 < x1 and y0 < y1."""
    values = number_list(text)
    if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
        raise argparse.ArgumentTypeError(
            f"expected X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1 (image pixels), got {text!r}"
        )
    return (values[0], values[1], values[2], values[3])


def device_name(text: str) -> str:
    """argparse type: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if text in ("auto", "cpu", "cuda", "mps") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {text!r}")


# ---------------------------------------------------------------------------------------------
# The declarations


@dataclass(frozen=True)
class Option:
    """One option: its flags (the first is its name in help, the others aliases), the argparse
    keywords, what a command may set itself, and the help group it goes in."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any]
    per_command: frozenset[str] = field(default_factory=frozenset)
    group: str | None = None
    dest: str | None = None  # the attribute it is parsed into (default: its name in OPTIONS)


def _opt(
    *flags: str, own: str = "", group: str | None = None, dest: str | None = None, **kwargs: Any
) -> Option:
    return Option(flags, kwargs, frozenset(own.split()), group, dest)


_PRE = "preprocessing (overrides what the model says)"
_MODEL_HELP = (
    f"model name: a timm or torchvision model (default {DEFAULT_MODEL}, which ships offline with "
    "its ImageNet weights; a name both libraries know goes to timm: write torchvision:NAME or "
    "timm:NAME to choose), package.module:factory or file.py:factory for your own, a camscope "
    "train run folder, a Hugging Face save_pretrained folder, or a whole pickled model file "
    "(torch.save(model); with --trust-checkpoint)"
)
_TASKS = "tasks beyond classification (docs/tasks.md)"
GROUP_HELP = {
    _TASKS: "Detectors (torchvision Faster R-CNN, RetinaNet, FCOS, SSD) get one map per box, "
    "segmentation models the map of a class in a region, embedding models the map of the "
    "similarity to a reference image.",
}
DATA_HELP = """\
DATA: class folders (DIR/<class>/*.jpg: ImageNet class names, WordNet lemmas or synset ids such as
n02123045 for ImageNet models, the run's class names for models from `camscope train`), annotated
boxes (a .csv with file,class,x0,y0,x1,y1, a COCO .json or VOC .xml, or a folder in a common
layout: *.csv | *.json | *.xml, Annotations/*.xml, annotations/xmls/*.xml + images/,
annotations/*.json; the largest object's class is the image's class), a .csv/.parquet list with
path and label columns, cifar10:DIR | cifar100:DIR, or builtin:N[:SEED]. Object masks, where
given, are masks/<image stem>.png beside the annotations.
"""
_UNMAPPED = {
    "error": "error (list them all)",
    "fail": "error (annotations: stop and list them; class folders: their images fail, exit 1)",
    "skip": "skip (leave out the objects or class folders they label; counted)",
    "keep": "keep (embed them, judge no prediction)",
}


def unmapped_help(choices: Sequence[str], folders: str = "error") -> dict[str, Any]:
    """The command's own ``--unmapped`` setting: ``choices`` (the first is the default);
    ``folders="fail"``: unmapped class folders make their images fail (:class:`DataOptions`)."""
    said = [_UNMAPPED["fail" if c == "error" and folders == "fail" else c] for c in choices]
    help_text = f"labels that are no model class: {', '.join(said)}; default {choices[0]}"
    return {"choices": tuple(choices), "default": choices[0], "help": help_text}


OPTIONS: dict[str, Option] = {
    # the model
    "model": _opt("--model", default=DEFAULT_MODEL, metavar="NAME", help=_MODEL_HELP),
    "models": _opt(
        "--model", action="append", default=None, metavar="NAME", own="help", dest="model",
        help="a model to offer, repeatable (see `camscope explain --help` for the names)",
    ),
    "weights": _opt(
        "--weights", type=Path, default=None, metavar="FILE",
        help="load weights from a local checkpoint (.safetensors, or .pt/.pth state dict)",
    ),
    "trust_checkpoint": _opt(
        "--trust-checkpoint", action="store_true",
        help="allow a pickled checkpoint to run code when loaded (only for files you trust)",
    ),
    "random_init": _opt(
        "--random-init", action="store_true",
        help="do not load pretrained weights (random initialisation; for testing and sanity checks)",
    ),
    "device": _opt(
        "--device", type=device_name, default="auto", metavar="auto|cpu|cuda[:N]", own="default help",
        help="where to run the model (default auto: cuda when available, else cpu)",
    ),
    # how it is explained
    "method": _opt(
        "--method", "-m", "--methods", default="gradcam", metavar="NAMES", own="default help",
        help="comma-separated CAM methods, or 'all' (default gradcam; see `camscope methods`)",
    ),
    "layer": _opt(
        "--layer", "-l", "--layers", action="append", default=None, metavar="LAYER", own="help",
        help="layer(s) to explain, repeatable or comma-separated (default auto; see "
        "`camscope layers MODEL`)",
    ),
    "target": _opt(
        "--target", "-t", default="top1", metavar="T", own="default help",
        help="class to explain: top1, top5, topk:K, a class index or a class name (default top1)",
    ),
    "option": _opt(
        "--option", "-O", action="append", default=None, metavar="KEY=VALUE",
        help="method option, repeatable: batch_size=16, precision=bfloat16, num_samples=8, "
        "num_channels=32, seed=1, score=channel-softmax, align_corners=true, optimize=false",
    ),
    "as_is": _opt(
        "--as-is", action="store_true",
        help="explain the model in the mode it comes in (train-mode batch-norm and dropout stay "
        "active; a warning says when that changes the result); default: eval mode",
    ),
    "multilabel": _opt(
        "--multilabel", action="store_true",
        help="the classes are independent sigmoids (multi-label head), not a softmax; "
        "single-logit models are always read as binary sigmoid classifiers",
    ),
    "allow_slow": _opt(
        "--allow-slow", action="store_true",
        help="with --method all, also run methods over the pass budget (SS-CAM, IS-CAM, ...)",
    ),
    "pass_budget": _opt(
        "--pass-budget", type=positive_int, default=None, metavar="N",
        help="model passes per image that --method all may spend on one method (default 2000)",
    ),
    # preprocessing overrides
    "mean": _opt(
        "--mean", type=number_list, default=None, metavar="M[,M,M]", group=_PRE,
        help="per-channel mean of [0, 1] inputs (one value for every channel, or one per channel)",
    ),
    "std": _opt(
        "--std", type=number_list, default=None, metavar="S[,S,S]", group=_PRE,
        help="per-channel std, > 0",
    ),
    "input_size": _opt(
        "--input-size", type=pixel_size, default=None, metavar="H[,W]", group=_PRE,
        help="size the whole image is resized to (one number: square)",
    ),
    "class_names": _opt(
        "--class-names", type=Path, default=None, metavar="FILE", group=_PRE,
        help="text file with one class name per line, in class-index order",
    ),
    "channels": _opt(
        "--channels", type=int, choices=(1, 3), default=None, group=_PRE,
        help="input channels (default: the first convolution's, else the spec's): 1 = grey, "
        "16-bit and medical values kept at full precision",
    ),
    # tasks beyond classification
    "task": _opt(
        "--task", choices=TASK_CHOICES, default="auto", group=_TASKS,
        help="what the model does (default auto: what its spec says, classification for "
        "classifiers)",
    ),
    "box_threshold": _opt(
        "--box-threshold", type=unit_float, default=0.5, metavar="P", group=_TASKS,
        help="detection: explain every box scoring at least P (default 0.5)",
    ),
    "box": _opt(
        "--box", action="append", type=box_argument, default=None, metavar="X0,Y0,X1,Y1",
        group=_TASKS,
        help="detection: explain the detection that matches this box (image pixels; repeatable) "
        "instead of every box above the threshold",
    ),
    "box_iou": _opt(
        "--box-iou", default="none", metavar="MODE", group=_TASKS,
        help="detection: the score explained: none (the box's class score, default), multiply "
        "(times its IoU with the box) or add (plus its IoU, as pytorch-grad-cam)",
    ),
    "iou_threshold": _opt(
        "--iou-threshold", type=unit_float, default=0.5, metavar="T", group=_TASKS,
        help="detection: the least IoU of a box's match (default 0.5)",
    ),
    "task_class": _opt(
        "--class", default=None, metavar="NAME", group=_TASKS,
        help="segmentation: the class to explain (a name or index, e.g. person); detection: "
        "only boxes of this class",
    ),
    "region": _opt(
        "--region", type=Path, default=None, metavar="MASK", group=_TASKS,
        help="segmentation: a mask picture of the pixels to explain (non-black, or non-"
        "transparent; default: the pixels the model labels with the class)",
    ),
    "reference": _opt(
        "--reference", action="append", default=None, metavar="IMAGE", group=_TASKS,
        help="similarity: the image to compare with (repeatable: one map per reference)",
    ),
    # inputs
    "max_pixels": _opt(
        "--max-pixels", type=positive_int, default=None, metavar="N",
        help="refuse images with more pixels than this (default: PIL's bomb limit, ~89 MP)",
    ),
    "timeout": _opt(
        "--timeout", type=positive_seconds, default=None, metavar="S",
        help=f"seconds one URL download may take in all (default {DEFAULT_TIMEOUT:g}; a silent "
        "server is given up after at most 10 s)",
    ),
    "window": _opt(
        "--window", type=window_pair, default=None, metavar="C,W",
        help="window centre and width for DICOM/NIfTI values, e.g. 40,400 for CT soft tissue "
        "(default: the file's own window, else the values' min..max)",
    ),
    # data
    "data": _opt(
        "--data", default=None, metavar="DATA", own="default required help",
        help="the labelled images (see below)",
    ),
    "images": _opt(
        "--images", default=None, metavar="DIR",
        help="the folder that holds the annotated images",
    ),
    "class_map": _opt(
        "--class-map", default=None, metavar="FILE",
        help='JSON {"data-set label or folder name": ["model class name or index", ...]}; a hit '
        "on any listed class counts as correct; [] marks a label as unmapped",
    ),
    "unmapped": _opt(
        "--unmapped", own="choices default help", **unmapped_help(("error", "skip"))
    ),
    "allow_outside_paths": _opt(
        "--allow-outside-paths", action="store_true",
        help="accept image paths in annotations that leave the data folder (../x.jpg, /abs/x.jpg)",
    ),
    "seed": _opt(
        "--seed", type=int, default=0, own="default help", help="seed of builtin:N (default 0)"
    ),
    "limit": _opt(
        "--limit", type=positive_int, default=None, metavar="N", own="help",
        help="use only the first N images",
    ),
    # what is written
    "out": _opt(
        "--out", "-o", type=Path, default=None, metavar="DIR", own="default required help",
        help="output folder (default %(default)s)",
    ),
    "batch_size": _opt(
        "--batch-size", type=positive_int, default=1, metavar="N", own="default help",
        help="images per pass",
    ),
    "colormap": _opt(
        "--colormap", default="inferno", metavar="NAME",
        help="matplotlib colour map (default inferno; jet and turbo give the classic look)",
    ),
    "alpha": _opt(
        "--alpha", type=unit_float, default=0.5, help="heat-map opacity in [0, 1] (default 0.5)"
    ),
    "resume": _opt("--resume", action="store_true", own="help", help="continue the run in --out"),
    "json": _opt("--json", action="store_true", help="print JSON instead of text"),
    "no_progress": _opt("--no-progress", action="store_true", help="no progress bar"),
}  # fmt: skip

MODEL = ("model", "weights", "trust_checkpoint", "random_init", "device")
PREPROCESSING = ("mean", "std", "input_size", "class_names", "channels")
TASKS = (
    "task", "box_threshold", "box", "box_iou", "iou_threshold", "task_class", "region", "reference",
)  # fmt: skip
EXPLAIN_MODE = ("as_is", "multilabel", "allow_slow", "pass_budget")
INPUTS = ("timeout", "window")
DATA = ("images", "class_map", "unmapped", "allow_outside_paths")
LABELLED = ("data", *DATA)  # --data and how its labels and paths are read


def add(
    parser: Any, *names: str, left_out_is_none: bool = False, **own: Any
) -> list[argparse.Action]:
    """Add the declared options ``names`` to ``parser``; ``own`` holds what the command sets
    itself, by option: ``out={"default": Path("out/audit")}``, only keys the declaration lists.
    ``left_out_is_none`` (``camscope train``): every default is None, so that an option left out
    keeps the stored value of a resumed run. ``parser`` may be an argument group. Returns the
    actions added."""
    unknown = set(own) - set(names)
    if unknown:
        raise ValueError(f"settings for options not added: {sorted(unknown)}")
    groups: dict[str, Any] = {}
    actions: list[argparse.Action] = []
    for name in names:
        option = OPTIONS[name]
        mine = dict(own.get(name, {}))
        refused = set(mine) - option.per_command
        if refused:
            raise ValueError(f"{option.flags[0]}: a command may not set {sorted(refused)}")
        kwargs = {**option.kwargs, **mine}
        if left_out_is_none:
            kwargs["default"] = None
        target: Any = parser
        if option.group is not None:
            if option.group not in groups:
                groups[option.group] = parser.add_argument_group(
                    option.group, GROUP_HELP.get(option.group)
                )
            target = groups[option.group]
        actions.append(target.add_argument(*option.flags, dest=option.dest or name, **kwargs))
    return actions
