"""Attention rollout.

Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020 (arXiv:2005.00928).
Each block's attention, averaged over heads, gets the identity added for the residual
connection and its rows renormalised; the blocks' matrices are multiplied from the first block on:

.. math::
    \\hat A_b = \\mathrm{rownorm}\\big(\\tfrac{1}{H}\\textstyle\\sum_h A_b^h + I\\big), \\qquad
    \\tilde A = \\hat A_L \\hat A_{L-1} \\cdots \\hat A_1

The map is the row of ``\\tilde A`` of the token the head reads (the class token), over the patch
tokens. It does not depend on the class (the same map for every target) and needs no gradient:
one forward with the attention recorded (:mod:`camscope.core.attention`; ``(A + I)``
row-normalised is ``(A + I) / 2`` since attention rows sum to 1), as vit-explain does with
``head_fusion="mean"`` and ``discard_ratio=0``.

Which blocks: those up to and including the block of the chosen layer (every block at the
default ``auto`` layer, the last block's first LayerNorm). ViTs only: timm ViT/DeiT and
torchvision ``VisionTransformer`` (:data:`camscope.core.attention.SUPPORTED`); other models are
refused with the reason.

Deviations: the forward runs in eval mode (attention dropout off) whatever ``mode`` says; for a
distilled DeiT the map is the mean of the class and distillation tokens' rows (its head reads
both), and for heads that pool the patch tokens (``global_pool="avg"``) the mean of the patch
tokens' rows. vit-explain's optional discarding of the lowest attentions and max/min head fusion
are not offered.

Example:
    >>> explain(vit, x, methods="attention-rollout").maps["attention-rollout"]  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.attention import record_attention
from ..core.context import LayerContext
from ..core.registry import register_method
from ._transformer import layout_and_last_block, patch_grid, readout_rows


def rollout_matrix(probs: list[Tensor]) -> Tensor:
    """``(B, N, N)`` product of the head-averaged, identity-augmented, row-normalised attention
    matrices ``(B, heads, N, N)`` of the blocks in order (float32)."""
    joint: Tensor | None = None
    for attention in probs:
        fused = attention.float().mean(1)
        fused = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        fused = fused / fused.sum(-1, keepdim=True)
        joint = fused if joint is None else fused @ joint
    assert joint is not None
    return joint


@register_method(
    "attention-rollout",
    needs_gradients=False,
    class_specific=False,
    models="transformer",
    family="attention",
    paper="Abnar & Zuidema, ACL 2020",
    summary="ViTs: head-averaged attention (+ identity) multiplied over the blocks, class-token row",
    passes=1,
    passes_text="1 (own forward recording the attention)",
)
def attention_rollout(ctx: LayerContext) -> Tensor:
    """Attention rolled out over the blocks up to the layer's; not class-specific."""
    layout, last = layout_and_last_block(ctx, "attention-rollout")
    run = record_attention(ctx.model, ctx.input.detach(), layout, range(last + 1), grad=False)
    joint = rollout_matrix([run.probs[i] for i in range(last + 1)])
    k = ctx.scores.shape[1]
    rows = readout_rows(joint, layout)[:, None]  # (B, 1, N)
    return patch_grid(rows, layout, ctx, "attention-rollout").expand(-1, k, -1, -1)
