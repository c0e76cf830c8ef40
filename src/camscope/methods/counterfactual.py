"""Counterfactual explanation (negative Grad-CAM).

Selvaraju et al., ICCV 2017, Sec. 3 ("Counterfactual Explanations"): negating the gradients
highlights regions whose removal would make the network *more* confident in the class:

.. math::
    \\alpha_k^c = \\frac{1}{Z}\\sum_{i,j} -\\frac{\\partial y^c}{\\partial A^k_{ij}}, \\qquad
    L^c = \\mathrm{ReLU}\\Big(\\sum_k \\alpha_k^c A^k\\Big)

No deviation from the paper.
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ._common import channel_weighted, spatial_mean


@register_method(
    "counterfactual",
    channel_contributions=True,
    paper="Selvaraju et al., ICCV 2017, Sec. 3",
    summary="Grad-CAM with negated gradients: evidence *against* the class",
    passes_text="0 (shared backward)",
)
def counterfactual(ctx: LayerContext) -> Tensor:
    """Grad-CAM with negated gradients: where evidence *against* the class lies."""
    weights = -spatial_mean(ctx.require_gradients())
    return channel_weighted(weights, ctx.activations)
