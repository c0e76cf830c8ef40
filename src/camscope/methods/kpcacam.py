"""KPCA-CAM.

Karmani et al., "KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel
PCA", 2024 (arXiv:2410.00267). Eigen-CAM with kernel PCA in place of PCA: the positions of the
layer are the samples, their channel vectors (centred) the features, and the map is every
position's projection on the first kernel principal component:

.. math::
    K_{ij} = \\kappa(a_i, a_j), \\quad \\tilde K = (I - \\tfrac1n \\mathbf 1)\\, K\\,
    (I - \\tfrac1n \\mathbf 1) = \\sum_m \\lambda_m u_m u_m^\\top, \\quad
    L_i = \\sqrt{\\lambda_1}\\, u_{1,i}

with ``a_i`` the centred activations at position ``i`` and, by default, the sigmoid kernel
``kappa(a, b) = tanh(gamma a.b + 1)`` with ``gamma = 1 / C`` (scikit-learn's defaults, which the
paper's implementation uses). Options: ``kpca_kernel`` (``sigmoid``, ``rbf``
``exp(-gamma |a - b|^2)``, ``poly`` ``(gamma a.b + 1)^3``, ``cosine``, ``linear``; ``linear``
gives Eigen-CAM) and ``kpca_gamma``. Class-agnostic, no gradients; pure torch in float64 (an
``n x n`` eigendecomposition for ``n`` positions: cheap at 7 x 7 or 14 x 14, slow beyond ~50 x 50).

Deviation: the sign of a kernel principal component is arbitrary; the paper's implementation
(scikit-learn) makes its largest entry positive, camscope uses Eigen-CAM's rule (the map
correlates positively with the channel sum, :func:`camscope.core.ops.first_component`), so that
strong activations map to high values.

Example:
    >>> explain(model, x, "kpcacam", method_options={"kpca_kernel": "rbf"})  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ._common import method_option, option_choice

KERNELS = ("sigmoid", "rbf", "poly", "cosine", "linear")


def kernel_matrix(rows: Tensor, kernel: str, gamma: float) -> Tensor:
    """``(N, n, C)`` -> ``(N, n, n)`` kernel between the rows (scikit-learn's definitions, with
    ``coef0 = 1`` and ``degree = 3``)."""
    dot = rows @ rows.transpose(1, 2)
    if kernel == "sigmoid":
        return torch.tanh(gamma * dot + 1.0)
    if kernel == "poly":
        return (gamma * dot + 1.0) ** 3
    if kernel == "rbf":
        return torch.exp(-gamma * torch.cdist(rows, rows).square())
    if kernel == "cosine":
        unit = F.normalize(rows, dim=2)
        return unit @ unit.transpose(1, 2)
    return dot


def kernel_pca_projection(features: Tensor, kernel: str, gamma: float | None) -> Tensor:
    """``(N, C, h, w)`` -> ``(N, h, w)``: every position's coordinate on the first kernel principal
    component of the centred channel vectors, signed as Eigen-CAM."""
    n, c, h, w = features.shape
    rows = features.reshape(n, c, h * w).transpose(1, 2).double()
    rows = rows - rows.mean(dim=1, keepdim=True)
    matrix = kernel_matrix(rows, kernel, 1.0 / c if gamma is None else gamma)
    centred = (
        matrix
        - matrix.mean(dim=1, keepdim=True)
        - matrix.mean(dim=2, keepdim=True)
        + matrix.mean(dim=(1, 2), keepdim=True)
    )
    values, vectors = torch.linalg.eigh(centred)
    projection = (vectors[..., -1] * values[..., -1:].clamp(min=0).sqrt()).float()
    reference = features.float().sum(1).reshape(n, h * w)
    reference = reference - reference.mean(dim=1, keepdim=True)
    sign = torch.sign((projection * reference).sum(dim=1, keepdim=True))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (projection * sign).reshape(n, h, w)


@register_method(
    "kpcacam",
    needs_gradients=False,
    class_specific=False,
    paper="Karmani et al., 2024",
    summary="first kernel principal component of the activations (sigmoid kernel; the same "
    "map for every class)",
)
def kpcacam(ctx: LayerContext) -> Tensor:
    """First kernel principal component of the activations; class-agnostic."""
    kernel = option_choice(ctx.method_options, "kpca_kernel", "sigmoid", KERNELS)
    gamma = method_option(ctx.method_options, "kpca_gamma", None, (int, float))
    projection = kernel_pca_projection(
        ctx.activations, kernel, None if gamma is None else float(gamma)
    )
    return projection[:, None].expand(-1, ctx.scores.shape[1], -1, -1)
