"""Hugging Face ``transformers`` image classifiers.

Hugging Face (optional extra ``camscope[hf]``): a local folder saved with ``save_pretrained``
(``config.json``, weights, and usually ``preprocessor_config.json``) loads as an
``AutoModelForImageClassification`` together with the preprocessing its image processor declares
(size, mean/std, resampling); nothing is downloaded (``local_files_only=True``). The model's
``ImageClassifierOutput`` is read through its ``logits``; ``layer="auto"`` and the token reshape
know ViT/DeiT/BEiT/DINOv2 (class tokens), Swin (tokens without prefix) and ConvNeXt (NCHW), see
:mod:`camscope.core.families` and :mod:`camscope.core.reshape`.

Example:
    >>> model, spec = load_hf_model("path/to/saved_vit")  # doctest: +SKIP
    >>> spec.input_size, spec.mean, spec.source  # doctest: +SKIP
    ((224, 224), (0.5, 0.5, 0.5), 'Hugging Face image processor')
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ModelLoadError
from .spec import IMAGENET_FALLBACK, ModelSpec, class_names_of

log = logging.getLogger(__name__)

# PIL resampling codes used in Hugging Face image-processor configs.
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``save_pretrained`` (it has a ``config.json``)."""
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file()


def _size(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, Mapping):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:
            edge = int(value["shortest_edge"])
            return edge, edge
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def _triple(value: Any, default: tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return float(value[0]), float(value[1]), float(value[2])
    return default


def spec_from_processor_config(
    cfg: Mapping[str, Any], name: str, class_names: list[str] | None = None
) -> ModelSpec:
    """:class:`ModelSpec` from a Hugging Face image-processor config (``preprocessor_config.json``).

    Reads ``crop_size`` (else ``size``: ``{"height", "width"}``, ``{"shortest_edge"}`` or an int),
    ``image_mean`` / ``image_std`` (identity when ``do_normalize`` is false) and ``resample`` (PIL
    code). ``crop_pct`` is reported when present. Deviation: camscope resizes the whole image to
    the input size instead of resizing the short side and cropping, so the map covers every pixel.
    """
    size = _size(cfg.get("crop_size")) if cfg.get("do_center_crop") else None
    size = size or _size(cfg.get("size")) or (224, 224)
    if cfg.get("do_normalize", True):
        mean = _triple(cfg.get("image_mean"), _IMAGENET_MEAN)
        std = _triple(cfg.get("image_std"), _IMAGENET_STD)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    resample = cfg.get("resample", 2)
    interpolation = _RESAMPLE.get(resample, "bilinear") if isinstance(resample, int) else "bilinear"
    if interpolation not in ("nearest", "bilinear", "bicubic"):
        log.info("resample %r is not supported; using bilinear", interpolation)
        interpolation = "bilinear"
    crop_pct = cfg.get("crop_pct")
    return ModelSpec(
        name=name,
        input_size=size,
        mean=mean,
        std=std,
        interpolation=interpolation,
        crop_pct=float(crop_pct) if isinstance(crop_pct, (int, float)) else None,
        class_names=list(class_names or []),
        source="Hugging Face image processor",
    )


_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def _missing_parts(folder: Path, model_hint: str) -> str | None:
    """What ``folder`` lacks to be a ``save_pretrained`` model folder, or None if nothing."""
    has_config = (folder / "config.json").is_file()
    weights = [
        p
        for p in folder.iterdir()
        if p.is_file() and (p.name in _WEIGHT_FILES or p.name.endswith(".safetensors.index.json"))
    ]
    checkpoints = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.suffix in _CHECKPOINT_SUFFIXES
    )
    if has_config and weights:
        return None
    lacks = []
    if not has_config:
        lacks.append("config.json")
    if not weights:
        lacks.append("weights (" + " or ".join(_WEIGHT_FILES[:2]) + ")")
    message = (
        f"folder {str(folder)!r} is not a model folder: it has no {' and no '.join(lacks)}. A "
        "Hugging Face folder written by model.save_pretrained(folder) holds both"
    )
    if checkpoints and not has_config:
        shown = ", ".join(checkpoints[:3])
        message += (
            f"; it does hold {shown}: for a checkpoint of a known architecture use "
            f"{model_hint.replace('FILE', str(folder / checkpoints[0]))}"
        )
    return message


def load_hf_model(
    path: str | Path, model_hint: str = "load_model('ARCH', weights=FILE)"
) -> tuple[nn.Module, ModelSpec]:
    """Load a ``save_pretrained`` folder as ``(model.eval(), spec)``, offline.

    Raises:
        ModelLoadError: ``transformers`` missing, a folder without ``config.json`` or weights (the
            message says which, and ``model_hint`` how to load a checkpoint it holds instead), or
            not an image classifier.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelLoadError(f"{str(folder)!r} is not a folder")
    missing = _missing_parts(folder, model_hint)
    if missing is not None:
        raise ModelLoadError(missing)
    try:
        from transformers import AutoModelForImageClassification
    except ImportError as err:
        raise ModelLoadError(
            "Hugging Face models need the optional extra: pip install 'camscope[hf]'"
        ) from err
    try:
        model = AutoModelForImageClassification.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:
        raise ModelLoadError(
            f"{str(folder)!r} could not be loaded as an image classifier ({err})"
        ) from err
    processor_file = folder / "preprocessor_config.json"
    names = class_names_of(model)
    if processor_file.is_file():
        cfg = json.loads(processor_file.read_text())
        spec = spec_from_processor_config(cfg, folder.name, names)
    else:
        # said once, by the caller (guessed_preprocessing): the CLI names --mean/--std
        log.info("%s has no preprocessor_config.json; using ImageNet preprocessing", folder)
        size = _size(getattr(model.config, "image_size", None))  # ViTs are built for one size
        spec = ModelSpec(
            name=folder.name,
            input_size=size or (224, 224),
            class_names=names,
            source=f"{IMAGENET_FALLBACK} (no preprocessor_config.json"
            + (", input size from config.json)" if size else ")"),
        )
    return model.eval(), spec
