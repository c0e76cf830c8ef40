"""A ``camscope train`` run folder is a model: ``load_model("runs/cifar_resnet18")``.

The folder's ``config.json`` carries the marker key ``"camscope_run"`` (the format version), so a
Hugging Face folder, which also has a ``config.json``, still loads as before. The architecture is
rebuilt with :func:`camscope.models.architectures.build_classifier` from the recorded ``arch``,
``stem``, ``arch_options``, class count and image size; ``model.safetensors`` (the best validation
epoch) fills it. The :class:`ModelSpec` comes from the same file: input size, mean/std,
interpolation and the class names of the training data.

A run folder is a file format anyone can edit or replace, so both files are checked before
anything is built (:func:`check_run_config`, :func:`camscope.models.checkpoints.fit_state_dict`):
the image size is a whole number from 8 to :data:`MAX_IMAGE_SIZE` pixels (a tampered
``"image_size": 100000`` would make every prediction allocate tens of gigabytes), mean and std
have one finite value per input channel (std > 0), the class names are distinct strings, as many
as the weights have outputs, the architecture is one camscope can build, and the weights are
finite floating-point tensors of the right shapes. Each refusal names the file and the field.

Example:
    >>> model, spec = load_run_folder("runs/gap")  # doctest: +SKIP
    >>> spec.class_names, spec.input_size  # doctest: +SKIP
    (['cat', 'cup', 'motorcycle', 'rocket'], (32, 32))
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ModelLoadError
from .architectures import STEMS, build_classifier, resolve_arch
from .checkpoints import fit_state_dict
from .spec import INTERPOLATIONS, ModelSpec

log = logging.getLogger(__name__)

MARKER = "camscope_run"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
#: The largest input side (pixels) a run folder may declare; ``camscope train`` refuses larger too.
MAX_IMAGE_SIZE = 2048
MIN_IMAGE_SIZE = 8
_CHANNELS = 3  # camscope train builds RGB models


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
    check_run_config(data, file)
    return dict(data)


def check_run_config(data: dict[str, Any], file: str | Path) -> None:
    """Check the fields of a run's ``config.json`` that decide the model and its inputs.

    Raises:
        ModelLoadError: naming the file, the field, the value and what to do.
    """

    def bad(field: str, why: str) -> ModelLoadError:
        return ModelLoadError(
            f"{str(file)!r}: field {field!r} {why}; the run folder was edited or damaged: restore "
            "config.json from the run (or retrain)"
        )

    size = data["image_size"]
    if not _is_int(size) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise bad(
            "image_size",
            f"is {size!r}, not a whole number of pixels from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}",
        )
    channels = data.get("channels", _CHANNELS)
    if channels != _CHANNELS or isinstance(channels, bool):
        raise bad("channels", f"is {channels!r}; camscope train builds {_CHANNELS}-channel models")
    for field in ("mean", "std"):
        values = data[field]
        if not isinstance(values, list) or len(values) != _CHANNELS:
            raise bad(field, f"is {values!r}, not a list of {_CHANNELS} numbers (one per channel)")
        if not all(_is_number(v) and math.isfinite(v) for v in values):
            raise bad(field, f"is {values!r}; every value must be a finite number")
        if field == "std" and min(values) <= 0:
            raise bad(field, f"is {values!r}; every value must be > 0")
    classes = data["classes"]
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, str) and c for c in classes)
    ):
        raise bad("classes", f"is {_short(classes)}, not a list of two or more class names")
    if len(set(classes)) != len(classes):
        twice = sorted({c for c in classes if classes.count(c) > 1})
        raise bad("classes", f"names {', '.join(map(repr, twice[:5]))} more than once")
    count = data.get("num_classes", len(classes))
    if count != len(classes):
        raise bad("num_classes", f"is {count!r} but 'classes' lists {len(classes)} names")
    arch = data["arch"]
    if not isinstance(arch, str) or not arch.strip():
        raise bad("arch", f"is {arch!r}, not an architecture name")
    try:
        resolve_arch(arch)
    except Exception as err:
        raise bad("arch", f"is {arch!r}, which this camscope cannot build ({err})") from err
    stem = data.get("stem", "auto")
    if stem not in (*STEMS, "none"):
        raise bad("stem", f"is {stem!r}, not one of {', '.join((*STEMS, 'none'))}")
    if data.get("interpolation", "bilinear") not in INTERPOLATIONS:
        raise bad(
            "interpolation",
            f"is {data['interpolation']!r}, not one of {', '.join(INTERPOLATIONS)}",
        )
    if not isinstance(data.get("arch_options") or {}, dict):
        raise bad("arch_options", f"is {_short(data['arch_options'])}, not an object")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    except Exception as err:
        raise ModelLoadError(
            f"{str(weights)!r} is not a readable safetensors file ({err}); the run folder was "
            "damaged: restore the file or retrain"
        ) from err
    fit_state_dict(
        model,
        state,
        repr(str(weights)),
        f"{config['arch']!r} with the {len(config['classes'])} classes of config.json",
        "; config.json and model.safetensors come from different runs: restore the run's own "
        "pair of files",
    )
    log.info("model from run folder %s (%s)", path, config["arch"])
    return model.eval(), spec
