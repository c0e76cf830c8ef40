"""Loading models together with the preprocessing they expect.

(Interface fixed; implementation in progress.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects as input and what its outputs mean.

    Attributes:
        name: model name as loaded.
        input_size: ``(H, W)`` the model was trained at.
        mean / std: per-channel normalisation of [0, 1] RGB.
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        crop_pct: centre-crop fraction of the training recipe (reported; camscope resizes the whole
            image so the map covers every pixel the user sees).
        class_names: one label per output class (empty if unknown).
        source: where these facts came from (``"timm pretrained_cfg"``, ``"torchvision weights"``, ...).
    """

    name: str
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float | None = None
    class_names: list[str] = field(default_factory=list)
    source: str = "default"

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


def imagenet_class_names() -> list[str]:
    raise NotImplementedError


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    weights: str | Path | None = None,
    trust_checkpoint: bool = False,
) -> tuple[nn.Module, ModelSpec]:
    raise NotImplementedError


def spec_for_model(model: nn.Module, name: str | None = None) -> ModelSpec:
    raise NotImplementedError
