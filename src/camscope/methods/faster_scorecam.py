"""Faster Score-CAM: Score-CAM on the channels of highest spatial variance only.

An approximation of Score-CAM (Wang et al., CVPR-W 2020, see :mod:`.scorecam`) popularised in
community code: channels are ranked per image by the variance of their activation over positions
and only the top ``N`` are scored; the others get weight zero:

.. math::
    L^c = \\mathrm{ReLU}\\Big(\\sum_{k \\in \\mathrm{top}_N(\\mathrm{Var}(A^k))} w_k^c A^k\\Big)

``N`` is the method option ``num_channels``, default 64 (our choice: a few percent of the 2048
channels of a ResNet-50 stage, 20% of EfficientNet-Lite0's 320); with ``N >= C`` it equals
Score-CAM. Low-variance channels carry little spatial information, which is why the map stays
close to Score-CAM's, but it is not equal to it. Ties in variance are broken by channel index.

Example:
    >>> explain(model, x, "faster-scorecam", method_options={"num_channels": 32})  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ..perturbation.options import positive_int
from ._common import channel_weighted
from .scorecam import score_weights


def top_variance(acts: Tensor, n: int) -> Tensor:
    """``(B, C)`` boolean mask of the ``n`` channels of highest spatial variance per image."""
    var = acts.flatten(2).var(dim=2, unbiased=False)
    var = torch.nan_to_num(var, nan=-1.0)
    order = torch.sort(var, dim=1, descending=True, stable=True).indices[:, :n]
    selected = torch.zeros_like(var, dtype=torch.bool)
    return selected.scatter_(1, order, True)


@register_method(
    "faster-scorecam",
    needs_gradients=False,
    channel_contributions=True,
    paper="Wang et al., CVPR-W 2020 (channel subset)",
    family="perturbation",
    summary="approximation of Score-CAM on the N channels of highest variance",
    passes=lambda q: min(q.option("num_channels", 64), q.channels) + 1,
    passes_text="min(N, C) + 1, N = num_channels (64)",
)
def faster_scorecam(ctx: LayerContext) -> Tensor:
    """Score-CAM restricted to the N channels of highest variance (default 64)."""
    n = positive_int(ctx.method_options, "num_channels", 64) or 64
    selected = top_variance(ctx.activations, min(n, ctx.activations.shape[1]))
    weights = score_weights(ctx, "faster-scorecam", selected=selected)
    return channel_weighted(weights, ctx.activations)
