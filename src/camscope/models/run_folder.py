"""A ``camscope train`` run folder is a model: ``load_model("runs/cifar_resnet18")``.

The folder's ``config.json`` carries the marker key ``"camscope_run"`` (the format version), so a
Hugging Face folder, which also has a ``config.json``, still loads as before. The architecture is
rebuilt with :func:`camscope.models.architectures.build_classifier` from the recorded ``arch``,
``stem``, ``arch_options``, class count and image size; ``model.safetensors`` (the best validation
epoch) fills it. The :class:`ModelSpec` comes from the same file: input size, mean/std,
interpolation and the class names of the training data.

Example:
    >>> model, spec = load_run_folder("runs/gap")  # doctest: +SKIP
    >>> spec.class_names, spec.input_size  # doctest: +SKIP
    (['cat', 'cup', 'motorcycle', 'rocket'], (32, 32))
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ModelLoadError
from .architectures import build_classifier
from .spec import ModelSpec

log = logging.getLogger(__name__)

MARKER = "camscope_run"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``camscope train`` (its ``config.json`` has the
    ``"camscope_run"`` marker)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and MARKER in data


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The run's ``config.json``.

    Raises:
        ModelLoadError: missing, unreadable, of a newer format, or lacking a needed field.
    """
    file = Path(path) / "config.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"run folder {str(path)!r}: cannot read config.json ({err})") from err
    version = data.get(MARKER)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelLoadError(
            f"run folder {str(path)!r} has format {version!r}; this camscope reads format "
            f"{FORMAT_VERSION} (upgrade camscope)"
        )
    missing = [k for k in ("arch", "classes", "image_size", "mean", "std") if k not in data]
    if missing:
        raise ModelLoadError(f"run folder {str(path)!r}: config.json lacks {', '.join(missing)}")
    return dict(data)


def spec_from_run_config(config: dict[str, Any], path: str | Path) -> ModelSpec:
    """The :class:`ModelSpec` a run folder records."""
    size = int(config["image_size"])
    mean = [float(v) for v in config["mean"]]
    std = [float(v) for v in config["std"]]
    return ModelSpec(
        name=f"{Path(path).name} ({config['arch']})",
        input_size=(size, size),
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        interpolation=str(config.get("interpolation", "bilinear")),
        crop_pct=None,
        class_names=[str(c) for c in config["classes"]],
        source=f"camscope run folder {path}",
    )


def build_from_run_config(config: dict[str, Any]) -> nn.Module:
    """The run's architecture, randomly initialised (no pretrained weights are fetched)."""
    stem = str(config.get("stem", "auto"))
    return build_classifier(
        str(config["arch"]),
        len(config["classes"]),
        int(config["image_size"]),
        # "none" (GapNet, transformers): as published; a ViT's small patch is recorded as "cifar"
        stem=stem if stem in ("cifar", "imagenet", "auto") else "imagenet",
        options=dict(config.get("arch_options") or {}),
    ).model


def load_run_folder(path: str | Path, load_weights: bool = True) -> tuple[nn.Module, ModelSpec]:
    """Rebuild the run's model (eval mode) with the best epoch's weights and its spec.

    Args:
        path: the run folder.
        load_weights: ``False`` keeps the random initialisation (``--random-init``).

    Raises:
        ModelLoadError: bad config, no ``model.safetensors`` yet, or weights that do not fit.
    """
    config = read_run_config(path)
    spec = spec_from_run_config(config, path)
    try:
        model = build_from_run_config(config)
    except Exception as err:
        raise ModelLoadError(
            f"run folder {str(path)!r}: cannot rebuild {config['arch']!r} ({err})"
        ) from err
    if not load_weights:
        log.info("run folder %s: random initialisation (pretrained=False)", path)
        return model.eval(), spec
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(
            f"run folder {str(path)!r} has no {WEIGHTS_FILE} yet (no epoch finished); continue "
            "the run with `camscope train --resume --out ...`"
        )
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights), device="cpu")
        model.load_state_dict(state)
    except Exception as err:
        raise ModelLoadError(f"{str(weights)!r} does not fit {config['arch']!r}: {err}") from err
    log.info("model from run folder %s (%s)", path, config["arch"])
    return model.eval(), spec
