"""The model options every command shares: ``--model``, ``--weights``, ``--trust-checkpoint``,
``--random-init``, ``--device``, and loading the model they describe.

Nothing here imports torch at module level (``camscope --help`` stays fast).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
        "with its ImageNet weights)"
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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelOptions:
        return cls(
            name=args.model,
            weights=args.weights,
            trust_checkpoint=bool(args.trust_checkpoint),
            random_init=bool(args.random_init),
            device=args.device,
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
    """Load the model the options describe, in eval mode on the chosen device."""
    from .. import models

    if options.random_init and options.weights is not None:
        raise UsageError("--random-init and --weights exclude each other; pass only one")
    device = pick_device(options.device)
    model, spec = models.load_model(
        options.name,
        weights=options.weights,
        trust_checkpoint=options.trust_checkpoint,
        pretrained=False if options.random_init else None,
    )
    model = model.to(device).eval()
    return model, spec, device
