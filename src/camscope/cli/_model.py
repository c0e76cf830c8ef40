"""The model options every command shares: ``--model``, ``--weights``, ``--trust-checkpoint``,
``--random-init``, ``--device``, and loading the model they describe; and the options of how a
model is explained (``--as-is``, ``--multilabel``, ``--allow-slow``, ``--pass-budget``).

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

DEFAULT_MODEL = "efficientnet_lite0"  # same as camscope.models.DEFAULT_MODEL (kept torch-free here)


def add_model_arguments(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    """``--model`` (or a MODEL positional), ``--weights``, ``--trust-checkpoint``,
    ``--random-init`` and ``--device``."""
    model_help = (
        f"model name: a timm or torchvision model (default {DEFAULT_MODEL}, which ships offline "
        "with its ImageNet weights), package.module:factory or file.py:factory for your own, a "
        "Hugging Face save_pretrained folder, or a whole pickled model file (torch.save(model); "
        "with --trust-checkpoint)"
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


def add_explain_mode_arguments(parser: argparse.ArgumentParser) -> None:
    """``--as-is``, ``--multilabel``, ``--allow-slow`` and ``--pass-budget`` (see
    :class:`ExplainMode`)."""
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="explain the model in the mode it comes in (train-mode batch-norm and dropout stay "
        "active; a warning says when that changes the result); default: eval mode",
    )
    parser.add_argument(
        "--multilabel",
        action="store_true",
        help="the classes are independent sigmoids (multi-label head), not a softmax; "
        "single-logit models are always read as binary sigmoid classifiers",
    )
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
