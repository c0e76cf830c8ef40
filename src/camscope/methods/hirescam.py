"""HiResCAM.

Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
neural networks", 2020 (arXiv:2011.08891), Eq. 4: the gradient multiplies the activation element by
element instead of being averaged first:

.. math::
    L^c_{\\text{HiResCAM}} = \\sum_k \\frac{\\partial y^c}{\\partial A^k} \\odot A^k

No deviation: ``raw`` is the signed map of the paper; ``maps`` clamp negatives to zero, as for
every method.
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method


@register_method(
    "hirescam",
    channel_contributions=True,
    paper="Draelos & Carin, 2020",
    summary="element-wise gradient x activation; shows the locations that add to the score "
    "when one linear layer follows the map",
    passes_text="0 (shared backward)",
)
def hirescam(ctx: LayerContext) -> Tensor:
    """Element-wise gradient x activation, summed over channels."""
    grads = ctx.require_gradients()
    return grads * ctx.activations[:, None]
