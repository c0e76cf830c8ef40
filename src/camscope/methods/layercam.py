"""Layer-CAM.

Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
IEEE TIP 2021, Eq. 5-6: every location gets its own weight, the positive gradient there:

.. math::
    L^c = \\mathrm{ReLU}\\Big(\\sum_k \\mathrm{ReLU}\\big(\\tfrac{\\partial y^c}{\\partial A^k}\\big)
    \\odot A^k\\Big)

No deviation for one layer. For several layers camscope fuses every method the same way (mean of
the normalised maps); the paper instead scales shallow-layer maps with ``tanh`` before combining.
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method


@register_method(
    "layercam",
    channel_contributions=True,
    paper="Jiang et al., IEEE TIP 2021",
    summary="positive gradients weight each location; good on shallow layers",
    passes_text="0 (shared backward)",
)
def layercam(ctx: LayerContext) -> Tensor:
    """Positive gradients weight each activation element; works well on shallow layers."""
    grads = ctx.require_gradients()
    return grads.clamp(min=0) * ctx.activations[:, None]
