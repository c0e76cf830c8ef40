"""Score-CAM.

Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
CVPR Workshops 2020 (arXiv:1910.01279), Eq. 5-8. Each activation channel, upsampled to the input
size and min-max normalised, masks the input; the channel's weight is the target's softmax
probability for the masked input:

.. math::
    M_k = s(\\mathrm{Up}(A^k)),\\qquad w_k^c = \\mathrm{softmax}\\big(f(X \\odot M_k)\\big)_c,
    \\qquad L^c = \\mathrm{ReLU}\\Big(\\sum_k w_k^c A^k\\Big)

with ``s`` the min-max normalisation. The paper's baseline term ``f(X_b)`` is the same for every
channel and drops out of the normalised map. For a single-logit (binary) or multi-label head the
probability is the target's sigmoid instead of the softmax (:mod:`camscope.core.targets`).

Speed: constant channels share one pass on the zero input, duplicate masks share a pass, passes
are batched and run on an eval-mode copy of the model made for the call (on CPU a frozen
TorchScript graph with batch-norm folded; see :mod:`camscope.perturbation.masked` and
:mod:`camscope.perturbation.fastpath`); the result equals one pass per channel up to float
rounding. ``optimize=False`` runs the passes on the model itself.

Options (``explain(..., method_options={...})``): ``batch_size``, ``progress``, ``optimize``,
``fast_model`` (a :class:`~camscope.perturbation.FastForward` of the model that the caller owns
and reuses across calls, instead of a copy made for each call),
``score="channel-softmax"`` for the variant of pytorch-grad-cam and torchcam (softmax over
channels of the target logits instead of the softmax probability over classes);
``align_corners=True`` upsamples the masks as pytorch-grad-cam does (the authors' code and
torchcam use half-pixel centres, the default); ``precision="bfloat16"`` runs the masked passes
under autocast: faster, approximate (maps correlated 0.999 with float32 in our benchmark).

Deviations: a constant channel's mask is empty (the paper's normalisation divides by zero); the
masked passes run in eval mode even when the model is in train mode. Callable targets are not
supported (the masked outputs are scored by class).

Example:
    >>> explain(model, x, methods="scorecam", method_options={"batch_size": 64})  # doctest: +SKIP
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ..perturbation.masked import Scorer, channel_weights, masked_channel_scores
from ..perturbation.options import Settings, class_targets
from ._common import channel_weighted


def score_weights(
    ctx: LayerContext,
    name: str,
    *,
    coefficients: tuple[float, ...] = (1.0,),
    noise_std: float = 0.0,
    seed: int = 0,
    selected: Tensor | None = None,
) -> Tensor:
    """``(B, K, C)`` Score-CAM-family weights (shared by scorecam, sscam, iscam, faster-scorecam)."""
    settings = Settings.read(ctx.method_options)
    ids = class_targets(ctx.class_ids, name)
    scorer = Scorer(ctx.model, settings, ctx.input.device, ctx.head)
    scores = masked_channel_scores(
        scorer,
        ctx.input.detach(),
        ctx.activations,
        ids,
        coefficients=coefficients,
        noise_std=noise_std,
        seed=seed,
        selected=selected,
        desc=name,
    )
    return channel_weights(scores, selected, settings.score).to(ctx.activations)


@register_method(
    "scorecam",
    needs_gradients=False,
    channel_contributions=True,
    paper="Wang et al., CVPR-W 2020",
    family="perturbation",
    summary="channels weighted by the target's probability on the input masked by each channel",
    passes=lambda q: q.channels + 1,
    passes_text="C + 1 at most",
)
def scorecam(ctx: LayerContext) -> Tensor:
    """Channels weighted by the target's score on the input masked by each channel."""
    return channel_weighted(score_weights(ctx, "scorecam"), ctx.activations)
