"""XGrad-CAM.

Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
BMVC 2020 (arXiv:2008.02312), Eq. 9: channel weights are gradients weighted by the normalised
activation:

.. math::
    w_k^c = \\sum_{i,j} \\frac{A^k_{ij}}{\\sum_{a,b} A^k_{ab}}\\,\\frac{\\partial y^c}{\\partial A^k_{ij}},
    \\qquad L^c = \\mathrm{ReLU}\\Big(\\sum_k w_k^c A^k\\Big)

Deviation: a channel whose activations sum to (nearly) zero relative to their magnitude,
``|sum A| <= 1e-6 * sum |A|``, gets weight zero; the paper's formula is undefined there, and a
fixed epsilon (as in other implementations) lets such channels, with weights of 1e10 and more,
decide the whole map (seen on MobileNet-V3's Hardswish features).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ._common import channel_weighted


@register_method(
    "xgradcam",
    channel_contributions=True,
    paper="Fu et al., BMVC 2020",
    summary="gradients weighted by normalised activations",
    passes_text="0 (shared backward)",
)
def xgradcam(ctx: LayerContext) -> Tensor:
    """Gradients averaged with the activation as weights (sensitivity and conservation axioms)."""
    grads = ctx.require_gradients()
    acts = ctx.activations[:, None]
    total = acts.sum(dim=(-2, -1))
    defined = total.abs() > 1e-6 * acts.abs().sum(dim=(-2, -1))
    safe_total = torch.where(defined, total, torch.ones_like(total))
    weights = torch.where(defined, (grads * acts).sum(dim=(-2, -1)) / safe_total, 0.0)
    return channel_weighted(weights, ctx.activations)
