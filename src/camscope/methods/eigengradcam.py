"""Eigen-Grad-CAM.

The first principal component of the gradient-weighted activations ``A * dy^c/dA``, a class-specific
variant of Eigen-CAM (Muhammad & Yeasin, IJCNN 2020) introduced by the pytorch-grad-cam project
(Gildenblat et al., 2021):

.. math::
    L^c = (G^c \\odot A)\\, v_1, \\qquad G^c \\odot A - \\overline{G^c \\odot A} = U\\Sigma V^\\top

Same centring and sign rule as :mod:`camscope.methods.eigencam`.
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ._common import first_component


@register_method(
    "eigengradcam",
    paper="Muhammad & Yeasin 2020; Gildenblat et al. 2021",
    summary="first principal component of gradient x activation",
    passes_text="0 (shared backward)",
)
def eigengradcam(ctx: LayerContext) -> Tensor:
    """First principal component of gradient x activation; class-specific."""
    grads = ctx.require_gradients()
    b, k = grads.shape[:2]
    weighted = (grads * ctx.activations[:, None]).flatten(0, 1)
    return first_component(weighted).reshape(b, k, *weighted.shape[-2:])
