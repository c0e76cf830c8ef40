"""Small tensor helpers shared by the method files (no hooks, no model calls)."""

from __future__ import annotations

import torch
from torch import Tensor


def weighted_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """``sum_c weights[b, k, c] * A[b, c]``: ``(B, K, C)`` x ``(B, C, h, w)`` -> ``(B, K, h, w)``."""
    return torch.einsum("bkc,bchw->bkhw", weights, activations)


def spatial_mean(t: Tensor) -> Tensor:
    """Mean over the last two (spatial) axes."""
    return t.mean(dim=(-2, -1))


def first_component(features: Tensor) -> Tensor:
    """Projection of each position onto the first principal component of its channels.

    ``features`` is ``(N, C, h, w)``; the positions (h*w rows of C values) are centred per channel,
    and the result is ``(N, h, w)``. The sign of a singular vector is arbitrary; we choose the sign
    that makes the projection correlate positively with the channel sum of the (uncentred)
    features, so that strong activations map to high values.
    """
    n, c, h, w = features.shape
    rows = features.reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
    centred = rows - rows.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = centred @ vh[:, 0, :, None]  # (N, hw, 1)
    projection = projection.squeeze(-1)
    reference = rows.sum(dim=2)
    reference = reference - reference.mean(dim=1, keepdim=True)
    sign = torch.sign((projection * reference).sum(dim=1, keepdim=True))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (projection * sign).reshape(n, h, w)
