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

from .._registry import register_method
from ..engine import LayerContext
from ._common import spatial_mean, weighted_sum


@register_method("gradcam", paper="Selvaraju et al., ICCV 2017")
def gradcam(ctx: LayerContext) -> Tensor:
    """Channel weights are the spatially averaged gradients of the target score."""
    weights = spatial_mean(ctx.require_gradients())
    return weighted_sum(weights, ctx.activations).clamp(min=0)
