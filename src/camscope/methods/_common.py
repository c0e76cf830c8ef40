"""Small tensor helpers shared by the method files (no hooks, no model calls)."""

from __future__ import annotations

from torch import Tensor

from ..core.ops import first_component

__all__ = ["channel_weighted", "first_component", "spatial_mean"]


def channel_weighted(weights: Tensor, activations: Tensor) -> Tensor:
    """Per-channel contributions ``w[b, k, c] * A[b, c]``: ``(B, K, C)``, ``(B, C, h, w)`` ->
    ``(B, K, C, h, w)``; the engine sums them over ``C``."""
    return weights[..., None, None] * activations[:, None]


def spatial_mean(t: Tensor) -> Tensor:
    """Mean over the last two (spatial) axes."""
    return t.mean(dim=(-2, -1))
