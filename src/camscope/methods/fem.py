"""FEM: the Feature Explanation Method.

Fuad, Martin, Giot, Bourqui, Benois-Pineau & Zemmari, "Features Understanding in 3D CNNs for
Actions Recognition in Video", IPTA 2020 (doi:10.1109/IPTA50016.2020.9286629). Gradient-free and
class-agnostic: each channel keeps the positions where it is unusually strong (the k-sigma rule,
``k = 2``), and the binary masks are summed weighted by the channels' means:

.. math::
    M^k_{ij} = \\big[A^k_{ij} > \\mu_k + k\\,\\sigma_k\\big], \\qquad
    L = \\sum_k \\mu_k\\, M^k

with ``mu_k`` and ``sigma_k`` the mean and (population) standard deviation of channel ``k`` over
the positions. Options: ``fem_k`` (default 2) and ``fem_weighting``.

Deviations: the threshold is strict (``>``): a constant channel (``sigma = 0``) then marks no
position instead of all of them (Xplique's implementation uses ``>=``). pytorch-grad-cam's ``FEM``
computes another map, ``sum_k mean(M^k) A^k`` (the fraction of marked positions weights the
activations); ``method_options={"fem_weighting": "activations"}`` gives that one.

Example:
    >>> explain(model, x, "fem", method_options={"fem_k": 1.5}).maps["fem"]  # doctest: +SKIP
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ._common import method_option, option_choice


@register_method(
    "fem",
    needs_gradients=False,
    class_specific=False,
    channel_contributions=True,
    paper="Fuad et al., IPTA 2020",
    summary="each channel's unusually strong positions (k-sigma rule), weighted by its mean "
    "(the same map for every class)",
)
def fem(ctx: LayerContext) -> Tensor:
    """Binary k-sigma masks of every channel weighted by the channel means (or, with
    ``fem_weighting='activations'``, the activations weighted by the masks' coverage)."""
    k = float(method_option(ctx.method_options, "fem_k", 2.0, (int, float)))
    weighting = option_choice(
        ctx.method_options, "fem_weighting", "masks", ("masks", "activations")
    )
    acts = ctx.activations
    mean = acts.mean(dim=(-2, -1), keepdim=True)
    std = acts.std(dim=(-2, -1), keepdim=True, correction=0)
    masks = (acts > mean + k * std).to(acts.dtype)
    if weighting == "masks":
        contributions = mean * masks
    else:
        contributions = masks.mean(dim=(-2, -1), keepdim=True) * acts
    return contributions[:, None].expand(-1, ctx.scores.shape[1], -1, -1, -1)
