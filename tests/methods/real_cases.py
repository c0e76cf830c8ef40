"""Shared inputs of the new methods' agreement tests: the offline default model (EfficientNet-Lite0,
pretrained) on the cat photo, a random-init timm ViT, copies for the peers, and Pearson's r."""

from __future__ import annotations

import copy
from functools import cache

import numpy as np
import torch
from torch import Tensor, nn

CAT = 285  # "Egyptian cat", the default model's top class on skimage's chelsea (p ~ 0.77)
VIT_SIZE = 112  # 7 x 7 patch tokens of 16 px


@cache
def efficientnet() -> tuple[nn.Module, Tensor]:
    """The default model (eval mode) and the preprocessed cat photo ``(1, 3, 224, 224)``."""
    from camscope.data.inputs import demo_images
    from camscope.io import preprocess
    from camscope.models import load_model

    model, spec = load_model("efficientnet_lite0")
    return model.eval(), preprocess(dict(demo_images())["chelsea"], spec)


@cache
def vit() -> tuple[nn.Module, Tensor, int]:
    """A random-init timm ViT-Tiny on 112 px inputs (its head rescaled so that logits spread like
    a trained model's), an input, and its top class."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=VIT_SIZE, num_classes=10
    ).eval()
    x = torch.randn(1, 3, VIT_SIZE, VIT_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        spread = float(model(x).std())
        model.head.weight.mul_(5.0 / spread)
        model.head.bias.mul_(5.0 / spread)
        top = int(model(x).argmax())
    return model, x, top


def vit_tokens_to_map(tokens: Tensor) -> Tensor:
    """The peers' reshape transform for :func:`vit`: drop the class token, lay the 7 x 7 patch
    tokens out as ``(B, C, 7, 7)``."""
    side = VIT_SIZE // 16
    return tokens[:, 1:].reshape(tokens.shape[0], side, side, -1).permute(0, 3, 1, 2)


def peer_copy(model: nn.Module) -> nn.Module:
    """The peers call ``model.eval()``, register hooks and keep references: they get a copy."""
    return copy.deepcopy(model)


def pearson(a: object, b: object) -> float:
    """Pearson's r of two maps (any shapes with the same number of values)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])
