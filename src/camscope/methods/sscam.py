"""SS-CAM: Smoothed Score-CAM.

Wang et al., "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization",
arXiv:2006.14255 (2020). Score-CAM whose channel weights average the target score over ``N``
noisy versions of each mask:

.. math::
    w_k^c = \\frac{1}{N}\\sum_{i=1}^{N}
        \\mathrm{softmax}\\big(f(X \\odot (M_k + \\delta_{ik}))\\big)_c,\\qquad
    \\delta_{ik} \\sim \\mathcal{N}(0, \\sigma^2)

(``M_k`` as in :mod:`.scorecam`); defaults ``N = 35`` (``num_samples``) and ``sigma = 2``
(``noise_std``), the values torchcam uses (the paper studies several). The noise of row ``(image, i, k)`` comes from its own generator
seeded from ``seed`` (default 0) and the row, so results are reproducible and independent of
the batch size.

Deviations: all-zero channels are not scored in ``probability`` mode: their contribution
``w_k A^k`` is zero whatever ``w_k`` is. Everything else as in :mod:`.scorecam`.
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ..perturbation.options import Settings, option, positive_int
from ._common import channel_weighted
from .scorecam import score_weights


def nonzero_channels(acts: Tensor) -> Tensor:
    """``(B, C)``: whether a channel has any non-zero activation."""
    return acts.flatten(2).ne(0).any(dim=2)


@register_method(
    "sscam",
    needs_gradients=False,
    channel_contributions=True,
    paper="Wang et al., 2020",
    family="perturbation",
    summary="Score-CAM averaged over noisy masks",
    passes=lambda q: q.option("num_samples", 35) * q.channels + 1,
    passes_text="N x C + 1, N = num_samples (35)",
)
def sscam(ctx: LayerContext) -> Tensor:
    """Score-CAM with weights averaged over noisy masks (default 35 samples, sigma 2)."""
    opts = ctx.method_options
    n = positive_int(opts, "num_samples", 35) or 35
    std = float(option(opts, "noise_std", 2.0, (int, float)))
    seed = int(option(opts, "seed", 0, int))
    selected = None
    if Settings.read(opts).score == "probability":
        selected = nonzero_channels(ctx.activations)
    weights = score_weights(
        ctx, "sscam", coefficients=(1.0,) * n, noise_std=std, seed=seed, selected=selected
    )
    return channel_weighted(weights, ctx.activations)
