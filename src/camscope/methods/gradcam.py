"""Grad-CAM.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017 (arXiv:1610.02391), Eq. 1-2:

.. math::
    \\alpha_k^c = \\frac{1}{Z}\\sum_{i,j} \\frac{\\partial y^c}{\\partial A^k_{ij}}, \\qquad
    L^c_{\\text{Grad-CAM}} = \\mathrm{ReLU}\\Big(\\sum_k \\alpha_k^c A^k\\Big)

``y^c`` is the pre-softmax score. No deviation from the paper.

Example:
    >>> explain(model, x, methods="gradcam").maps["gradcam"]  # doctest: +SKIP
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ._common import channel_weighted, spatial_mean


@register_method(
    "gradcam",
    channel_contributions=True,
    paper="Selvaraju et al., ICCV 2017",
    summary="channels weighted by spatially averaged gradients",
    passes_text="0 (shared backward)",
)
def gradcam(ctx: LayerContext) -> Tensor:
    """Channel weights are the spatially averaged gradients of the target score."""
    weights = spatial_mean(ctx.require_gradients())
    return channel_weighted(weights, ctx.activations)
