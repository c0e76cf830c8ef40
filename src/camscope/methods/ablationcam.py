"""Ablation-CAM.

Ramaswamy & Desai, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
Gradient-free Localization", WACV 2020, Eq. 3-4. A channel's weight is the relative drop of the
target score (logit) when that channel of the layer output is set to zero:

.. math::
    w_k^c = \\frac{y^c - y^c_k}{y^c},\\qquad L^c = \\mathrm{ReLU}\\Big(\\sum_k w_k^c A^k\\Big)

Speed: only the network after the layer runs for the ablated copies, batched; the layers before
it run once per image (see :func:`camscope.perturbation.ablation.ablation_scores`, which also says when
this is exact and how it falls back otherwise). All-zero channels have ``w_k = 0`` without a pass.

Options: ``batch_size``, ``progress``. Deviations: where ``|y^c| < 1e-6`` the drop is divided by
1 instead (the paper's ratio is undefined there); the passes run in eval mode; the layer output
must be the ``(B, C, h, w)`` tensor itself (``reshape`` is not supported); callable targets are
not supported.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ..errors import UsageError
from ..perturbation.ablation import ablation_scores
from ..perturbation.options import Settings, class_targets
from ._common import channel_weighted


@register_method(
    "ablationcam",
    needs_gradients=False,
    channel_contributions=True,
    paper="Ramaswamy & Desai, WACV 2020",
    family="perturbation",
    summary="relative drop of the target score when each channel is zeroed",
    passes=lambda q: q.channels + 1,
    passes_text="C + 1 (C of them only the layers after the target)",
)
def ablationcam(ctx: LayerContext) -> Tensor:
    """Channels weighted by the relative drop of the target score when each one is zeroed."""
    settings = Settings.read(ctx.method_options)
    ids = class_targets(ctx.class_ids, "ablationcam")
    empty = ~ctx.activations.flatten(2).ne(0).any(dim=2)
    ablated, base = ablation_scores(
        ctx.model, ctx.input.detach(), ctx.layer, ids, settings, skip=empty, head=ctx.head
    )
    if ablated.shape[1] != ctx.activations.shape[1]:
        raise UsageError(
            f"ablationcam: layer {ctx.layer!r} has {ablated.shape[1]} channels before reshape "
            f"and {ctx.activations.shape[1]} after; ablation needs a (B, C, h, w) layer output"
        )
    base = base[:, None, :]  # (B, 1, K)
    denominator = torch.where(base.abs() < 1e-6, torch.ones_like(base), base)
    weights = ((base - ablated) / denominator).transpose(1, 2)  # (B, K, C)
    return channel_weighted(weights.to(ctx.activations), ctx.activations)
