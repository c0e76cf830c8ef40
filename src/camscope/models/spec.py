"""What a model expects as input and what its outputs mean: :class:`ModelSpec`.

A spec travels with every loaded model: input size, normalisation, interpolation and class names
come from timm's ``pretrained_cfg``, torchvision's weights enum, a Hugging Face image processor or,
for any other module, ImageNet defaults (:func:`spec_for_model`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
#: The :attr:`ModelSpec.source` of a spec whose preprocessing was not given by the model but
#: guessed: ImageNet mean/std and, unless the model says otherwise, 224 x 224 bilinear
#: (:func:`guessed_preprocessing`).
IMAGENET_FALLBACK = "ImageNet defaults"


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects as input and what its outputs mean.

    Attributes:
        name: model name as loaded.
        input_size: ``(H, W)`` the model was trained at.
        mean / std: per-channel normalisation of [0, 1] values (RGB, or one value for grey).
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        crop_pct: centre-crop fraction of the training recipe (reported; camscope resizes the whole
            image so the map covers every pixel the user sees).
        class_names: one label per output class (empty if unknown).
        source: where these facts came from (``"timm pretrained_cfg"``, ``"torchvision weights"``, ...).
        channels: input channels the model reads (3 RGB, 1 grey); None means one per ``mean``
            value. :func:`camscope.io.preprocess` builds inputs with this many channels.
        task: what the model does: ``"classification"`` (default), ``"detection"`` or
            ``"segmentation"`` (:mod:`camscope.models.tasks`); commands explain it that way
            unless told otherwise (``--task``).
    """

    name: str
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float | None = None
    class_names: list[str] = field(default_factory=list)
    source: str = "default"
    channels: int | None = None
    task: str = "classification"

    def label(self, index: int) -> str:
        """Human-readable label of a class index (``"class 17"`` when names are unknown).

        >>> ModelSpec("m", class_names=["cat"]).label(0), ModelSpec("m").label(17)
        ('cat', 'class 17')
        """
        if 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"

    def example_input(self, device: Any = None) -> Tensor:
        """A zero batch of one input of the model's size, ``(1, channels, H, W)`` on ``device``
        (dry forwards: layer shapes, pass estimates)."""
        import torch

        channels = self.channels or len(self.mean)
        return torch.zeros(1, channels, *self.input_size, device=device)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary; the class names are reported as their count.

        >>> ModelSpec("m", class_names=["a", "b"]).to_dict()["num_classes"]
        2
        """
        out: dict[str, Any] = {
            "name": self.name,
            "input_size": [int(v) for v in self.input_size],
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "interpolation": self.interpolation,
            "crop_pct": None if self.crop_pct is None else float(self.crop_pct),
            "num_classes": len(self.class_names),
            "source": self.source,
            "channels": self.channels or len(self.mean),
        }
        if self.task != "classification":  # absent for classifiers: older summaries match
            out["task"] = self.task
        return out


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k labels in class-index order (shipped with torchvision, offline).

    >>> imagenet_class_names()[281]
    'tabby'
    """
    try:
        from torchvision.models import ResNet18_Weights

        names = list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:  # pragma: no cover - older/newer torchvision layouts
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        names = list(_IMAGENET_CATEGORIES)
    return names


def spec_for_model(model: nn.Module, name: str | None = None) -> ModelSpec:
    """Best-effort :class:`ModelSpec` for any module.

    Uses timm's ``pretrained_cfg`` when the model has one, otherwise ImageNet defaults (224 x 224,
    bilinear, ImageNet mean/std). Class names are the ImageNet labels when the model has 1000
    outputs (``num_classes`` attribute or last ``nn.Linear``), else empty.
    """
    label = name if name is not None else type(model).__name__
    num_classes = num_outputs(model)
    channels = input_channels(model)
    names = imagenet_class_names() if num_classes == 1000 else []
    if hasattr(getattr(model, "config", None), "model_type"):  # Hugging Face model
        names = class_names_of(model) or names
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, Mapping) and cfg.get("mean") is not None:
        spec = spec_from_timm_cfg(label, cfg, names, source="timm pretrained_cfg")
    else:
        spec = ModelSpec(name=label, class_names=names, source=IMAGENET_FALLBACK)
    if channels is not None and channels != len(spec.mean):
        spec = for_channels(spec, channels)
    return spec


def guessed_preprocessing(spec: ModelSpec) -> bool:
    """Whether ``spec``'s mean, std and input size are the ImageNet fallback rather than the
    model's own (a ``module:factory`` or pickled model without a spec, a Hugging Face folder
    without ``preprocessor_config.json``, a timm or torchvision model without a config): the
    caller should say so and how to give the model's own values.

    >>> guessed_preprocessing(spec_for_model(nn.Linear(4, 2))), guessed_preprocessing(ModelSpec("m"))
    (True, False)
    """
    return IMAGENET_FALLBACK in spec.source


def for_channels(spec: ModelSpec, channels: int) -> ModelSpec:
    """``spec`` for a model reading ``channels`` channels: mean and std of other lengths become
    their average (deviation: a grey model trained from RGB statistics has no agreed value; pass
    the model's own with ``--mean``/``--std``).

    >>> for_channels(ModelSpec("m", mean=(0.2, 0.4, 0.6), std=(0.5, 0.5, 0.5)), 1).mean
    (0.4,)
    """
    from dataclasses import replace

    def fit(values: tuple[float, ...]) -> tuple[float, ...]:
        if len(values) in (1, channels):
            return tuple(values)
        return (round(sum(values) / len(values), 6),) * channels

    return replace(spec, channels=channels, mean=fit(spec.mean), std=fit(spec.std))


def model_device(model: nn.Module) -> torch.device:
    """Where ``model`` runs: its first parameter's device (the CPU for a model without any)."""
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def input_channels(model: nn.Module) -> int | None:
    """Input channels of the model's first convolution (in module order), None without one."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def spec_from_timm_cfg(
    name: str, cfg: Mapping[str, Any], class_names: list[str], source: str
) -> ModelSpec:
    size = cfg.get("input_size") or (3, 224, 224)
    interpolation = str(cfg.get("interpolation") or "bilinear")
    if interpolation not in INTERPOLATIONS:
        interpolation = "bilinear"
    mean = tuple(float(v) for v in cfg.get("mean") or IMAGENET_MEAN)
    std = tuple(float(v) for v in cfg.get("std") or IMAGENET_STD)
    crop = cfg.get("crop_pct")
    return ModelSpec(
        name=name,
        input_size=(int(size[-2]), int(size[-1])),
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        interpolation=interpolation,
        crop_pct=None if crop is None else float(crop),
        class_names=class_names,
        source=source,
    )


def spec_from_torchvision(name: str, enum_value: Any, num_classes: int | None) -> ModelSpec:
    preset = enum_value.transforms()
    crop = int(next(iter(getattr(preset, "crop_size", None) or [224])))
    resize = next(iter(getattr(preset, "resize_size", None) or [crop]))
    mean = [float(v) for v in getattr(preset, "mean", IMAGENET_MEAN)]
    std = [float(v) for v in getattr(preset, "std", IMAGENET_STD)]
    mode = getattr(preset, "interpolation", None)
    interpolation = str(getattr(mode, "value", mode) or "bilinear")
    if interpolation not in INTERPOLATIONS:
        interpolation = "bilinear"
    categories = list(enum_value.meta.get("categories") or [])
    if num_classes is not None and len(categories) != num_classes:
        categories = imagenet_class_names() if num_classes == 1000 else []
    return ModelSpec(
        name=name,
        input_size=(crop, crop),
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        interpolation=interpolation,
        crop_pct=crop / float(resize) if resize else None,
        class_names=categories,
        source=f"torchvision weights {enum_value}",
    )


BINARY_CLASS_NAMES = ["negative", "positive"]


def with_binary_names(spec: ModelSpec, model: nn.Module) -> ModelSpec:
    """A single-logit (sigmoid) model has two classes, 0 and 1 (see
    :mod:`camscope.core.targets`): the spec's two class names when it gives two, else
    ``["negative", "positive"]``.

    >>> with_binary_names(ModelSpec("m"), nn.Linear(4, 1)).class_names
    ['negative', 'positive']
    """
    if num_outputs(model) != 1 or len(spec.class_names) == 2:
        return spec
    return dataclasses.replace(spec, class_names=list(BINARY_CLASS_NAMES))


def num_outputs(model: nn.Module) -> int | None:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    last: nn.Linear | None = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return None if last is None else int(last.out_features)


def class_names_of(model: nn.Module) -> list[str]:
    """``config.id2label`` in class order, or ``[]`` when the labels are the ``LABEL_i`` defaults."""
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if not isinstance(id2label, Mapping) or not id2label:
        return []
    labels = [str(id2label[k]) for k in sorted(id2label, key=int)]
    if all(label == f"LABEL_{i}" for i, label in enumerate(labels)):
        return []
    return labels
