"""Helpers shared by the CLI commands: argument types, model options, tables, output streams.

Nothing here imports torch at module level, so building the parser (``camscope --help``) stays fast.
Functions that need torch or the model stack import it when called.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TargetError, UsageError, closest

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..models import ModelSpec

DEFAULT_MODEL = "efficientnet_lite0"  # same as camscope.models.DEFAULT_MODEL (kept torch-free here)


def echo(text: str = "") -> None:
    """Write one line of command output to stdout."""
    sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    """Write one line to stderr (per-item problems; the command goes on)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number between 0 and 1, got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value}")
    return value


def split_list(values: Iterable[str] | None) -> list[str]:
    """Flatten repeated and comma-separated option values: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    items: list[str] = []
    for value in values or []:
        items.extend(part.strip() for part in value.split(",") if part.strip())
    return items


def parse_methods(text: str) -> list[str]:
    """Comma list of method names (or ``all``) -> canonical registry names, without duplicates."""
    from .._registry import get_method, list_methods

    names = split_list([text])
    if not names:
        raise UsageError("--method is empty; name at least one method (see `camscope methods`)")
    if [n.lower() for n in names] == ["all"]:
        return list_methods()
    result: list[str] = []
    for name in names:
        canonical = get_method(name).name
        if canonical not in result:
            result.append(canonical)
    return result


def parse_layers(values: Sequence[str] | None) -> str | list[str]:
    """``--layer`` values -> ``"auto"``, one name, or a list of names."""
    names = split_list(values)
    if not names:
        return "auto"
    return names[0] if len(names) == 1 else names


def _norm_label(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


def parse_target(text: str, class_names: Sequence[str], model: str = "the model") -> str | int:
    """``--target`` -> a target the engine understands.

    ``top1``, ``top5``, ``topk:K`` pass through; an integer is a class index; anything else is looked
    up among the model's class names (case-insensitive, ``_`` = space, and each comma-separated
    synonym of an ImageNet label counts: ``"tabby"`` finds ``"tabby, tabby cat"``).
    """
    from ..targets import parse_topk

    spec = text.strip()
    k = parse_topk(spec)
    if k is not None:
        if k < 1:
            raise TargetError(f"--target {text!r}: k must be at least 1")
        if class_names and k > len(class_names):
            raise TargetError(
                f"--target {text!r} asks for {k} classes; {model} has {len(class_names)}"
            )
        return f"topk:{k}"
    if re.fullmatch(r"[+-]?\d+", spec):
        index = int(spec)
        if class_names and not 0 <= index < len(class_names):
            raise TargetError(
                f"--target {index} is out of range: {model} has classes 0..{len(class_names) - 1}"
            )
        return index
    if not class_names:
        raise TargetError(
            f"--target {text!r} is not top1, top5, topk:K or a class index, and {model} has no "
            "class names to look it up in; pass a class index"
        )
    key = _norm_label(spec)
    exact = [i for i, name in enumerate(class_names) if _norm_label(name) == key]
    if exact:
        return exact[0]
    synonyms = [
        i
        for i, name in enumerate(class_names)
        if key in (_norm_label(part) for part in name.split(","))
    ]
    if len(synonyms) == 1:
        return synonyms[0]
    if len(synonyms) > 1:
        options = ", ".join(f"{i} ({class_names[i]!r})" for i in synonyms)
        raise TargetError(
            f"--target {text!r} matches several classes: {options}; pass the class index"
        )
    raise TargetError(
        f"--target {text!r} is not top1, top5, topk:K, a class index or a class name of {model}; "
        f"closest names: {closest(spec.lower(), class_names)}"
    )


def class_label(class_names: Sequence[str], index: int) -> str:
    """Human-readable label of a class index (``"class 17"`` when names are unknown)."""
    if 0 <= index < len(class_names):
        return class_names[index]
    return f"class {index}"


# ---------------------------------------------------------------------------------------------
# Model options shared by explain, predict and layers


def add_max_pixels_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-pixels``: the decompression-bomb cap for input images."""
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        metavar="N",
        help="refuse images with more pixels than this (default: PIL's bomb limit, ~89 MP)",
    )


_NOT_FROM_THE_COMMAND_LINE = {"progress", "output_adapter"}


def add_method_option_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--option",
        "-O",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="method option, repeatable: batch_size=16, precision=bfloat16, num_samples=8, "
        "num_channels=32, seed=1, score=channel-softmax, align_corners=true, optimize=false",
    )


def parse_method_options(values: Sequence[str] | None) -> dict[str, Any]:
    """``["batch_size=16", "precision=bfloat16"]`` -> ``{"batch_size": 16, ...}``: numbers and
    true/false are converted, unknown keys are a usage error naming the known ones."""
    from ..perturbation import KNOWN_OPTIONS

    known = sorted(set(KNOWN_OPTIONS) - _NOT_FROM_THE_COMMAND_LINE)
    options: dict[str, Any] = {}
    for text in values or []:
        key, sep, raw = (part.strip() for part in text.partition("="))
        if not sep or not key:
            raise UsageError(f"--option {text!r}: expected KEY=VALUE, e.g. batch_size=16")
        if key not in known:
            raise UsageError(
                f"--option: unknown key {key!r}; did you mean {closest(key, known, n=2)}? "
                f"Known keys: {', '.join(known)}"
            )
        options[key] = _option_value(raw)
    return options


def _option_value(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


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


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class InputItem:
    """One image to process: where it comes from, a file-name stem, and a loader."""

    source: str
    stem: str
    image: Any = None  # an already decoded PIL image (demo images), else loaded from ``source``

    def load(self, spec: ModelSpec, max_pixels: int) -> tuple[Any, torch.Tensor]:
        """The decoded image and its model input; raises ImageLoadError for a bad file."""
        from .. import io

        image = self.image
        if image is None:
            image = io.load_image(self.source, max_pixels=max_pixels)
        return image, io.preprocess(image, spec)


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def stem_of(source: str) -> str:
    """File-name stem for an input path or URL: ``/a/b/cat.01.jpg`` -> ``cat.01``."""
    tail = source.split("?", 1)[0].split("#", 1)[0].rstrip("/\\")
    name = re.split(r"[/\\]", tail)[-1] if tail else ""
    stem = Path(name).stem if "." in name else name
    stem = _UNSAFE.sub("_", stem).strip("._") or "image"
    return stem[:80]


def unique_stems(stems: Sequence[str]) -> list[str]:
    """Make stems unique in order: ``cat, cat, cat-2`` -> ``cat, cat-2, cat-2-2``."""
    used: set[str] = set()
    result: list[str] = []
    for stem in stems:
        candidate, n = stem, 2
        while candidate.lower() in used:
            candidate = f"{stem}-{n}"
            n += 1
        used.add(candidate.lower())
        result.append(candidate)
    return result


def gather_inputs(images: Sequence[str]) -> list[InputItem]:
    """Command-line image arguments (files, folders, URLs) or, when none, the demo images."""
    from .. import io

    if images:
        sources = io.collect_inputs(list(images))
        if not sources:
            raise UsageError(
                f"no images found in {', '.join(map(repr, images))}; image files end in "
                f"{', '.join(io.IMAGE_EXTENSIONS)}"
            )
        pairs: list[tuple[str, Any]] = [(s, None) for s in sources]
        stems = unique_stems([stem_of(s) for s in sources])
    else:
        demo = io.demo_images()
        pairs = [(f"demo:{name}", image) for name, image in demo]
        stems = unique_stems([stem_of(name) for name, _ in demo])
    return [InputItem(src, stem, image) for (src, image), stem in zip(pairs, stems)]


# ---------------------------------------------------------------------------------------------
# Tables


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned plain-text table with a dashed rule under the header."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
