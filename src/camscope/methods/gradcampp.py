"""Grad-CAM++.

Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep
Convolutional Networks", WACV 2018 (arXiv:1710.11063), Eq. 19 with the exponential score
``Y^c = exp(S^c)``, for which higher derivatives are powers of the first one:

.. math::
    \\alpha^{kc}_{ij} = \\frac{g_{ij}^2}{2 g_{ij}^2 + \\sum_{a,b} A^k_{ab}\\, g_{ij}^3},\\quad
    w_k^c = \\sum_{i,j} \\alpha^{kc}_{ij}\\,\\mathrm{ReLU}(g_{ij}),\\quad
    L^c = \\mathrm{ReLU}\\Big(\\sum_k w_k^c A^k\\Big)

with ``g = dS^c/dA^k``. Deviation: the paper's weights carry a factor ``exp(S^c)`` that is the
same for every channel and vanishes in the min-max normalisation; we drop it, as do the reference
implementations. Where the denominator is zero ``alpha`` is set to zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ._common import channel_weighted


@register_method(
    "gradcam++",
    channel_contributions=True,
    paper="Chattopadhay et al., WACV 2018",
    summary="pixel-weighted positive gradients; better with several instances of a class",
    passes_text="0 (shared backward)",
)
def gradcam_plus_plus(ctx: LayerContext) -> Tensor:
    """Pixel-weighted positive gradients (closed form for an exponential score)."""
    grads = ctx.require_gradients()
    acts = ctx.activations[:, None]  # (B, 1, C, h, w)
    g2 = grads.pow(2)
    denominator = 2 * g2 + acts.sum(dim=(-2, -1), keepdim=True) * grads.pow(3)
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where(denominator != 0, g2 / safe, torch.zeros_like(g2))
    weights = (alpha * grads.clamp(min=0)).sum(dim=(-2, -1))
    return channel_weighted(weights, ctx.activations)
