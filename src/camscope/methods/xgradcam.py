"""XGrad-CAM.

Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
BMVC 2020 (arXiv:2008.02312), Eq. 9: channel weights are gradients weighted by the normalised
activation:

.. math::
    w_k^c = \\sum_{i,j} \\frac{A^k_{ij}}{\\sum_{a,b} A^k_{ab}}\\,\\frac{\\partial y^c}{\\partial A^k_{ij}},
    \\qquad L^c = \\mathrm{ReLU}\\Big(\\sum_k w_k^c A^k\\Big)

Deviation: ``1e-7`` is added to the denominator so that all-zero channels get weight zero
instead of NaN.
"""

from __future__ import annotations

from torch import Tensor

from .._registry import register_method
from ..engine import LayerContext
from ._common import channel_weighted


@register_method("xgradcam", channel_contributions=True, paper="Fu et al., BMVC 2020")
def xgradcam(ctx: LayerContext) -> Tensor:
    """Gradients averaged with the activation as weights (sensitivity and conservation axioms)."""
    grads = ctx.require_gradients()
    acts = ctx.activations[:, None]
    total = acts.sum(dim=(-2, -1)) + 1e-7
    weights = (grads * acts).sum(dim=(-2, -1)) / total
    return channel_weighted(weights, ctx.activations)
