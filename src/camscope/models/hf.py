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
from .spec import ModelSpec, class_names_of

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


def load_hf_model(path: str | Path) -> tuple[nn.Module, ModelSpec]:
    """Load a ``save_pretrained`` folder as ``(model.eval(), spec)``, offline.

    Raises:
        ModelLoadError: ``transformers`` missing, not a model folder, or not an image classifier.
    """
    folder = Path(path)
    if not is_hf_folder(folder):
        raise ModelLoadError(
            f"{str(folder)!r} is not a Hugging Face model folder (no config.json); save one with "
            "model.save_pretrained(folder) and image_processor.save_pretrained(folder)"
        )
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
        log.warning("%s has no preprocessor_config.json; using ImageNet preprocessing", folder)
        spec = ModelSpec(name=folder.name, class_names=names, source="ImageNet defaults")
    return model.eval(), spec
