"""Pure-torch helpers shared by the engine, the methods and the metrics (no hooks, no I/O)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def normalise(maps: Tensor) -> Tensor:
    """ReLU, then min-max to [0, 1] over the last two axes; constant maps become zeros.

    "Constant" is relative to the map's own scale (span below 1e-6 of its maximum), so maps of
    tiny magnitude (deep randomly initialised networks, half precision) keep their shape.
    """
    maps = maps.clamp(min=0)
    flat = maps.flatten(-2)
    low = flat.amin(-1, keepdim=True)[..., None]
    high = flat.amax(-1, keepdim=True)[..., None]
    span = high - low
    tiny = torch.finfo(maps.dtype).tiny if maps.is_floating_point() else 1e-30
    varies = (span > 1e-6 * high) & (span > tiny)
    return torch.where(varies, (maps - low) / span.clamp(min=tiny), torch.zeros_like(maps))


def to_input_space(raw: Tensor, size: tuple[int, int]) -> Tensor:
    """``(B, K, h, w)`` -> normalised ``(B, K, H, W)``; guided ``(B, K, 3, H, W)`` -> magnitude."""
    if raw.ndim == 5:
        return normalise(raw.abs().amax(2))
    b, k, h, w = raw.shape
    up = F.interpolate(
        raw.clamp(min=0).reshape(b * k, 1, h, w), size=size, mode="bilinear", align_corners=False
    )
    return normalise(up.reshape(b, k, *size))


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
    # centred = U S V^T and the projection is centred @ v1 = s1 u1. Rather than a full SVD we take
    # the top eigenvector of the smaller Gram matrix (hw x hw or C x C), in float64 because
    # forming it squares the condition number; ~10x faster for a 7x7x1280 layer.
    wide = centred.double()
    if h * w <= c:
        values, vectors = torch.linalg.eigh(wide @ wide.transpose(1, 2))
        projection = vectors[..., -1] * values[..., -1:].clamp(min=0).sqrt()
    else:
        _, vectors = torch.linalg.eigh(wide.transpose(1, 2) @ wide)
        projection = (wide @ vectors[..., -1:]).squeeze(-1)
    projection = projection.to(features.dtype)
    reference = rows.sum(dim=2)
    reference = reference - reference.mean(dim=1, keepdim=True)
    sign = torch.sign((projection * reference).sum(dim=1, keepdim=True))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (projection * sign).reshape(n, h, w)


def fuse_layers(stack: Tensor, how: str = "mean") -> Tensor:
    """One map from the normalised maps of several layers, ``(L, ...)`` -> ``(...)``.

    ``"mean"``: their mean, renormalised. ``"product"``: their element-wise product, renormalised
    (RefineCAM: a position stays lit only where every layer's map agrees). A single layer's map is
    returned as it is.
    """
    if stack.shape[0] == 1:
        return stack[0]
    if how == "product":
        return normalise(stack.prod(0))
    return normalise(stack.mean(0))
