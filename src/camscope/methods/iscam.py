"""IS-CAM: Integrated Score-CAM.

Naidu et al., "IS-CAM: Integrated Score-CAM for axiomatic-based explanations", arXiv:2010.03023
(2020). The channel weight integrates the target score along the straight path from the empty
mask to the full mask, as a Riemann sum with ``N`` steps (``num_samples``, default 10):

.. math::
    w_k^c = \\frac{1}{N}\\sum_{i=1}^{N}
        \\mathrm{softmax}\\Big(f\\big(X \\odot \\tfrac{i}{N} M_k\\big)\\Big)_c

(``M_k`` as in :mod:`.scorecam`). Duplicate and empty masks are shared as in Score-CAM.

Deviation: torchcam multiplies the mask by the running sum ``sum_{j<=i} j/N`` (which exceeds 1);
we use the path point ``i/N`` itself, the Riemann sum of the integral the paper describes.
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ..perturbation.options import positive_int
from ._common import channel_weighted
from .scorecam import score_weights


@register_method(
    "iscam",
    needs_gradients=False,
    channel_contributions=True,
    paper="Naidu et al., 2020",
    family="perturbation",
    summary="Score-CAM with weights integrated over mask intensities",
    passes=lambda q: q.option("num_samples", 10) * q.channels + 1,
    passes_text="N x C + 1, N = num_samples (10)",
)
def iscam(ctx: LayerContext) -> Tensor:
    """Score-CAM with weights integrated over mask intensities i/N (default N = 10)."""
    n = positive_int(ctx.method_options, "num_samples", 10) or 10
    coefficients = tuple((i + 1) / n for i in range(n))
    return channel_weighted(score_weights(ctx, "iscam", coefficients=coefficients), ctx.activations)
