"""Seg-Eigen-CAM.

Chung & Ying, "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic Segmentation
Models", Applied Sciences 15(13), 7562, 2025 (doi:10.3390/app15137562). Eigen-CAM (Muhammad &
Yeasin, 2020) on the activations weighted element-wise by the *absolute* gradient (Eq. 10), which
keeps the local evidence of both signs, with the sign of the principal component chosen so that
the larger extreme is positive (Eq. 13):

.. math::
    \\tilde A = |G^c| \\odot A, \\qquad L^c = s\\,(\\tilde A - \\overline{\\tilde A})\\, v_1,
    \\qquad s = \\begin{cases}-1 & |\\min P| > |\\max P|\\\\ 1 & \\text{otherwise}\\end{cases}

with ``v_1`` the first right singular vector of the centred ``|G^c| A`` (positions x channels) and
``P`` the projection before the sign. For segmentation models pass a callable target
(:mod:`camscope.core.segmentation`); any other target works too.

No deviation from the paper or from pytorch-grad-cam's ``SegEigenCAM``.

Example:
    >>> explain(seg_model, x, "seg-eigencam", targets=mask_target)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ._common import first_component


def larger_extreme_positive(projection: Tensor) -> Tensor:
    """Flip each ``(h, w)`` map of ``(N, h, w)`` whose minimum is larger in magnitude than its
    maximum (Seg-Eigen-CAM's Eq. 13)."""
    flat = projection.flatten(1)
    flip = flat.amin(1).abs() > flat.amax(1).abs()
    return torch.where(flip[:, None, None], -projection, projection)


@register_method(
    "seg-eigencam",
    paper="Chung & Ying, Appl. Sci. 2025",
    summary="first principal component of |gradient| x activation, larger extreme positive "
    "(made for segmentation)",
    passes_text="0 (shared backward)",
)
def seg_eigencam(ctx: LayerContext) -> Tensor:
    """First principal component of absolute-gradient-weighted activations, sign by Eq. 13."""
    grads = ctx.require_gradients()
    b, k = grads.shape[:2]
    weighted = (grads.abs() * ctx.activations[:, None]).flatten(0, 1)
    projection = larger_extreme_positive(first_component(weighted))
    return projection.reshape(b, k, *weighted.shape[-2:])
