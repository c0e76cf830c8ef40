"""Grad-CAM element-wise.

A variant of Grad-CAM from the pytorch-grad-cam project (Gildenblat et al., 2021,
``GradCAMElementWise``; no paper of its own): like HiResCAM (Draelos & Carin, 2020) the gradient
multiplies the activation element by element, but each product passes a ReLU before the sum over
channels, so negative evidence in one channel cannot cancel positive evidence in another:

.. math::
    L^c = \\sum_k \\mathrm{ReLU}\\Big(\\frac{\\partial y^c}{\\partial A^k} \\odot A^k\\Big)

No deviation from the reference implementation (with ``eigen_smooth`` both take the first principal
component of the rectified products).

Example:
    >>> explain(model, x, methods="gradcam-elementwise").maps["gradcam-elementwise"]  # doctest: +SKIP
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method


@register_method(
    "gradcam-elementwise",
    channel_contributions=True,
    paper="Gildenblat et al. 2021 (pytorch-grad-cam)",
    summary="rectified element-wise gradient x activation, summed over channels",
    passes_text="0 (shared backward)",
)
def gradcam_elementwise(ctx: LayerContext) -> Tensor:
    """ReLU of gradient x activation per element; the engine sums over channels."""
    return (ctx.require_gradients() * ctx.activations[:, None]).clamp(min=0)
