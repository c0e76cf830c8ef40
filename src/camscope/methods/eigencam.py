"""Eigen-CAM.

Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020
(arXiv:2008.00299), Eq. 5: the projection of the layer output on its first principal component:

.. math::
    L_{\\text{Eigen-CAM}} = A\\,v_1, \\qquad A - \\bar A = U \\Sigma V^\\top

Class-agnostic: every target gets the same map. Deviations: positions are centred per channel
before the SVD (as in common implementations); the sign of ``v_1`` is chosen so that the map
correlates positively with the channel sum (the paper leaves the sign open, and a wrong sign
inverts the map).
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ._common import first_component


@register_method(
    "eigencam",
    needs_gradients=False,
    class_specific=False,
    paper="Muhammad & Yeasin, IJCNN 2020",
    summary="first principal component of the activations (the same map for every class)",
)
def eigencam(ctx: LayerContext) -> Tensor:
    """First principal component of the activations; no gradients, not class-specific."""
    k = ctx.scores.shape[1]
    projection = first_component(ctx.activations)  # (B, h, w)
    return projection[:, None].expand(-1, k, -1, -1)
