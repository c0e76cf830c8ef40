"""The model options every command shares: ``--model``, ``--weights``, ``--trust-checkpoint``,
``--random-init``, ``--device``, and loading the model they describe; and the options of how a
model is explained (``--as-is``, ``--multilabel``, ``--allow-slow``, ``--pass-budget``); and the
preprocessing overrides (``--mean``, ``--std``, ``--input-size``, ``--class-names``,
``--channels``); and the task of a model that is not a classifier (``--task``, ``--box``,
``--box-threshold``, ``--box-iou``, ``--iou-threshold``, ``--class``, ``--region``,
``--reference``: :func:`add_task_arguments`).

Nothing here imports torch at module level (``camscope --help`` stays fast).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..models import ModelSpec
    from ..tasks.request import TaskRequest

DEFAULT_MODEL = "efficientnet_lite0"  # same as camscope.models.DEFAULT_MODEL (kept torch-free here)


def add_model_arguments(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    """``--model`` (or a MODEL positional), ``--weights``, ``--trust-checkpoint``,
    ``--random-init`` and ``--device``."""
    model_help = (
        f"model name: a timm or torchvision model (default {DEFAULT_MODEL}, which ships offline "
        "with its ImageNet weights; a name both libraries know goes to timm: write "
        "torchvision:NAME or timm:NAME to choose), package.module:factory or file.py:factory for "
        "your own, a camscope train run folder, a Hugging Face save_pretrained folder, or a whole "
        "pickled model file (torch.save(model); with --trust-checkpoint)"
    )
    if positional:
        parser.add_argument("model", metavar="MODEL", help=model_help)
    else:
        parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=model_help)
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="FILE",
        help="load weights from a local checkpoint (.safetensors, or .pt/.pth state dict)",
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a pickled checkpoint to run code when loaded (only for files you trust)",
    )
    parser.add_argument(
        "--random-init",
        action="store_true",
        help="do not load pretrained weights (random initialisation; for testing and sanity checks)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to run the model (default: cuda when available, else cpu)",
    )


@dataclass(frozen=True)
class ModelOptions:
    """The model-related command-line options, as plain typed values."""

    name: str = DEFAULT_MODEL
    weights: Path | None = None
    trust_checkpoint: bool = False
    random_init: bool = False
    device: str = "auto"
    keep_mode: bool = False  # --as-is: leave the model in the mode its factory or pickle gave

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelOptions:
        return cls(
            name=args.model,
            weights=args.weights,
            trust_checkpoint=bool(args.trust_checkpoint),
            random_init=bool(args.random_init),
            device=args.device,
            keep_mode=bool(getattr(args, "as_is", False)),
        )


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a usage error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda was requested but no CUDA GPU is available; use --device cpu"
        )
    return torch.device(name)


def load_model(options: ModelOptions) -> tuple[nn.Module, ModelSpec, torch.device]:
    """Load the model the options describe on the chosen device, in eval mode (in the mode its
    factory or pickle gave with ``keep_mode``). Error messages name the CLI flags."""
    from .. import models

    if options.random_init and options.weights is not None:
        raise UsageError("--random-init and --weights exclude each other; pass only one")
    device = pick_device(options.device)
    model, spec = models.load_model(
        options.name,
        weights=options.weights,
        trust_checkpoint=options.trust_checkpoint,
        pretrained=False if options.random_init else None,
        keep_mode=options.keep_mode,
        hints="cli",
    )
    model = model.to(device)
    return (model if options.keep_mode else model.eval()), spec, device


def add_multilabel_argument(parser: argparse.ArgumentParser) -> None:
    """``--multilabel`` alone, for the commands that classify but have none of the other options
    of :func:`add_explain_mode_arguments` (read by :class:`ExplainMode` all the same)."""
    parser.add_argument(
        "--multilabel",
        action="store_true",
        help="the classes are independent sigmoids (multi-label head), not a softmax; "
        "single-logit models are always read as binary sigmoid classifiers",
    )


def add_explain_mode_arguments(parser: argparse.ArgumentParser) -> None:
    """``--as-is``, ``--multilabel``, ``--allow-slow`` and ``--pass-budget`` (see
    :class:`ExplainMode`)."""
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="explain the model in the mode it comes in (train-mode batch-norm and dropout stay "
        "active; a warning says when that changes the result); default: eval mode",
    )
    add_multilabel_argument(parser)
    parser.add_argument(
        "--allow-slow",
        action="store_true",
        help="with --method all, also run methods over the pass budget (SS-CAM, IS-CAM, ...)",
    )
    parser.add_argument(
        "--pass-budget",
        type=_positive_int,
        default=None,
        metavar="N",
        help="model passes per image that --method all may spend on one method (default 2000)",
    )


def _positive_int(text: str) -> int:
    from ._common import positive_int

    return positive_int(text)


@dataclass(frozen=True)
class ExplainMode:
    """How a model is explained, as plain typed values (``--as-is``, ``--multilabel``,
    ``--allow-slow``, ``--pass-budget``)."""

    as_is: bool = False
    multilabel: bool = False
    allow_slow: bool = False
    pass_budget: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExplainMode:
        return cls(
            as_is=bool(getattr(args, "as_is", False)),
            multilabel=bool(getattr(args, "multilabel", False)),
            allow_slow=bool(getattr(args, "allow_slow", False)),
            pass_budget=getattr(args, "pass_budget", None),
        )

    def explain_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`camscope.explain`: ``mode`` and ``multilabel``."""
        return {"mode": "as-is" if self.as_is else "eval", "multilabel": self.multilabel}


# ---------------------------------------------------------------------------------------------
# Preprocessing overrides (any model): --mean, --std, --input-size, --class-names, --channels


def add_preprocessing_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that override what the model's spec says about its input and its classes."""
    group = parser.add_argument_group("preprocessing (overrides what the model says)")
    group.add_argument(
        "--mean",
        type=number_list,
        default=None,
        metavar="M[,M,M]",
        help="per-channel mean of [0, 1] inputs (one value for every channel, or one per channel)",
    )
    group.add_argument(
        "--std", type=number_list, default=None, metavar="S[,S,S]", help="per-channel std, > 0"
    )
    group.add_argument(
        "--input-size",
        type=input_size,
        default=None,
        metavar="H[,W]",
        help="size the whole image is resized to (one number: square)",
    )
    group.add_argument(
        "--class-names",
        type=Path,
        default=None,
        metavar="FILE",
        help="text file with one class name per line, in class-index order",
    )
    group.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        default=None,
        help="input channels (default: the first convolution's, else the spec's): 1 = grey, "
        "16-bit and medical values kept at full precision",
    )


def number_list(text: str) -> tuple[float, ...]:
    """argparse type: ``0.5`` or ``0.485,0.456,0.406`` (finite numbers)."""
    import math

    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def input_size(text: str) -> tuple[int, int]:
    """argparse type: ``224`` or ``256,320`` (height, width), each >= 1."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H or H,W in pixels, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected H or H,W of positive pixels, got {text!r}")
    return (values[0], values[-1])


@dataclass(frozen=True)
class PreprocessingOptions:
    """The preprocessing overrides as plain typed values."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: tuple[int, int] | None = None
    class_names: Path | None = None
    channels: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PreprocessingOptions:
        return cls(
            mean=getattr(args, "mean", None),
            std=getattr(args, "std", None),
            input_size=getattr(args, "input_size", None),
            class_names=getattr(args, "class_names", None),
            channels=getattr(args, "channels", None),
        )


def apply_preprocessing(
    model: nn.Module, spec: ModelSpec, options: PreprocessingOptions
) -> tuple[ModelSpec, list[str]]:
    """The spec with the overrides applied, and notes for the user.

    The channel count is ``--channels``, else the first convolution's ``in_channels``, else the
    spec's; when it differs from the spec's, mean and std of another length become their average
    (say so, unless ``--mean``/``--std`` are given).
    """
    from dataclasses import replace

    from ..io import model_channels
    from ..models.spec import for_channels, guessed_preprocessing, input_channels, num_outputs

    notes: list[str] = []
    channels = options.channels or input_channels(model) or model_channels(spec)
    if channels != model_channels(spec):
        spec = for_channels(spec, channels)
        if options.mean is None or options.std is None:
            notes.append(
                f"the model reads {channels} channel(s); normalising with mean {list(spec.mean)} "
                f"and std {list(spec.std)} (pass --mean and --std to give the model's own)"
            )
    else:
        spec = replace(spec, channels=channels)
    if not notes and guessed_preprocessing(spec) and (options.mean is None or options.std is None):
        notes.append(
            f"model {spec.name!r} does not say how its inputs are prepared; using the ImageNet "
            f"fallback: mean {list(spec.mean)}, std {list(spec.std)}, "
            f"{spec.input_size[0]}x{spec.input_size[1]} {spec.interpolation} (pass --mean and "
            "--std, and --input-size, with the values the model was trained with)"
        )
    for what, values in (("mean", options.mean), ("std", options.std)):
        if values is None:
            continue
        if len(values) not in (1, channels):
            raise UsageError(
                f"--{what} has {len(values)} values for a {channels}-channel model; give 1 or "
                f"{channels}"
            )
        if what == "std" and min(values) <= 0:
            raise UsageError(f"--std values must be > 0, got {list(values)}")
        fitted = tuple(values) * (channels if len(values) == 1 else 1)
        spec = replace(spec, mean=fitted) if what == "mean" else replace(spec, std=fitted)
    if options.input_size is not None:
        spec = replace(spec, input_size=options.input_size)
    if options.class_names is not None:
        names = read_class_names(options.class_names)
        # a detector's last linear layer is its box regression: its classes are the spec's
        outputs = num_outputs(model) if spec.task == "classification" else len(spec.class_names)
        if outputs and len(names) != outputs and not (outputs == 1 and len(names) == 2):
            raise UsageError(
                f"--class-names {str(options.class_names)!r} has {len(names)} names; the model "
                f"has {outputs} outputs"
            )
        spec = replace(spec, class_names=names)
    return spec, notes


def read_class_names(path: Path) -> list[str]:
    """One class name per line (UTF-8); trailing empty lines are ignored, other empty lines are
    an error naming the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"--class-names {str(path)!r}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(
            f"--class-names {str(path)!r}: cannot read it as UTF-8 text ({err})"
        ) from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise UsageError(f"--class-names {str(path)!r} is empty; write one class name per line")
    for number, name in enumerate(names, 1):
        if not name:
            raise UsageError(f"--class-names {str(path)!r}: line {number} is empty")
    return names


# ---------------------------------------------------------------------------------------------
# Tasks beyond classification: --task and its options (camscope.tasks.TaskRequest)


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """``--task`` and the options of detection, segmentation and similarity (docs/tasks.md)."""
    from ..tasks.request import TASK_CHOICES

    group = parser.add_argument_group(
        "tasks beyond classification (docs/tasks.md)",
        "Detectors (torchvision Faster R-CNN, RetinaNet, FCOS, SSD) get one map per box, "
        "segmentation models the map of a class in a region, embedding models the map of the "
        "similarity to a reference image.",
    )
    group.add_argument(
        "--task",
        choices=TASK_CHOICES,
        default="auto",
        help="what the model does (default auto: what its spec says, classification for "
        "classifiers)",
    )
    group.add_argument(
        "--box-threshold",
        type=_unit_float,
        default=0.5,
        metavar="P",
        help="detection: explain every box scoring at least P (default 0.5)",
    )
    group.add_argument(
        "--box",
        action="append",
        type=box_argument,
        default=None,
        metavar="X0,Y0,X1,Y1",
        help="detection: explain the detection that matches this box (image pixels; repeatable) "
        "instead of every box above the threshold",
    )
    group.add_argument(
        "--box-iou",
        default="none",
        metavar="MODE",
        help="detection: the score explained: none (the box's class score, default), multiply "
        "(times its IoU with the box) or add (plus its IoU, as pytorch-grad-cam)",
    )
    group.add_argument(
        "--iou-threshold",
        type=_unit_float,
        default=0.5,
        metavar="T",
        help="detection: the least IoU of a box's match (default 0.5)",
    )
    group.add_argument(
        "--class",
        dest="task_class",
        default=None,
        metavar="NAME",
        help="segmentation: the class to explain (a name or index, e.g. person); detection: "
        "only boxes of this class",
    )
    group.add_argument(
        "--region",
        type=Path,
        default=None,
        metavar="MASK",
        help="segmentation: a mask picture of the pixels to explain (non-black, or non-"
        "transparent; default: the pixels the model labels with the class)",
    )
    group.add_argument(
        "--reference",
        action="append",
        default=None,
        metavar="IMAGE",
        help="similarity: the image to compare with (repeatable: one map per reference)",
    )


def _unit_float(text: str) -> float:
    from ._common import unit_float

    return unit_float(text)


def box_argument(text: str) -> tuple[float, float, float, float]:
    """argparse type: ``x0,y0,x1,y1`` in pixels, with x0 < x1 and y0 < y1."""
    values = number_list(text)
    if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
        raise argparse.ArgumentTypeError(
            f"expected X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1 (image pixels), got {text!r}"
        )
    return (values[0], values[1], values[2], values[3])


def task_request(args: argparse.Namespace) -> TaskRequest:
    """The task options as a :class:`camscope.tasks.TaskRequest` (checked)."""
    from ..tasks.request import TaskRequest

    request = TaskRequest(
        task=getattr(args, "task", "auto"),
        box_threshold=getattr(args, "box_threshold", 0.5),
        boxes=tuple(getattr(args, "box", None) or ()),
        class_name=getattr(args, "task_class", None),
        region=None if getattr(args, "region", None) is None else str(args.region),
        references=tuple(getattr(args, "reference", None) or ()),
        iou=getattr(args, "box_iou", "none"),
        iou_threshold=getattr(args, "iou_threshold", 0.5),
    )
    request.check()
    return request
