"""Transformer attribution (gradient-weighted attention relevance).

Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
Encoder-Decoder Transformers", ICCV 2021 (arXiv:2103.15679), its rule for self-attention, the
successor of their CVPR 2021 "Transformer Interpretability Beyond Attention Visualization"
without its LRP relevances. The relevance matrix starts as the identity and every block, from
the first on, adds its gradient-weighted attention, averaged over heads after keeping the
positive part, multiplied into what came before:

.. math::
    \\bar A_b = \\mathbb{E}_h\\big[(\\nabla A_b \\odot A_b)^+\\big], \\qquad
    R \\leftarrow R + \\bar A_b \\, R, \\qquad R^{(0)} = I

``\\nabla A_b = \\partial y^c / \\partial A_b`` is the gradient of the target's logit with respect to
the block's attention probabilities. The map is the row of ``R`` of the token the head reads (the
class token), over the patch tokens. Class-specific; one forward with the attention in the graph
(:mod:`camscope.core.attention`) and one backward per target (batched over the targets).

Which blocks: those up to and including the block of the chosen layer (every block at the
default ``auto`` layer), with ``y^c`` the model's output either way. ViTs only
(:data:`camscope.core.attention.SUPPORTED`).

Deviations: the passes run in eval mode whatever ``mode`` says; for a distilled DeiT the map is the
mean of the class and distillation tokens' rows, for heads that pool the patch tokens the mean
of the patch tokens' rows (the paper reads the class token); callable targets are not supported.

Example:
    >>> explain(vit, x, methods="transformer-attribution", targets=[243])  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.attention import record_attention
from ..core.context import LayerContext
from ..core.passes import batched_grad
from ..core.registry import register_method
from ._transformer import layout_and_last_block, patch_grid, readout_rows, targets_and_adapter


def relevance_matrix(probs: list[Tensor], grads: list[Tensor]) -> Tensor:
    """``(B, K, N, N)`` relevance from each block's attention ``(B, heads, N, N)`` and its
    gradients ``(B, K, heads, N, N)``, blocks in order (float32)."""
    b, k = grads[0].shape[:2]
    n = probs[0].shape[-1]
    eye = torch.eye(n, dtype=torch.float32, device=probs[0].device)
    relevance = eye.expand(b, k, n, n)
    for attention, grad in zip(probs, grads):
        weighted = (grad.float() * attention.float()[:, None]).clamp(min=0).mean(2)
        relevance = relevance + weighted @ relevance
    return relevance


@register_method(
    "transformer-attribution",
    needs_gradients=False,
    uses_gradients=True,
    models="transformer",
    family="attention x gradient",
    paper="Chefer et al., ICCV 2021",
    summary="ViTs: positive gradient x attention, propagated through the blocks (class-token row)",
    passes=lambda q: 1 + q.targets,
    passes_text="1 + K (own forward, one backward per target)",
)
def transformer_attribution(ctx: LayerContext) -> Tensor:
    """Gradient-weighted attention relevance of the blocks up to the layer's, per target."""
    layout, last = layout_and_last_block(ctx, "transformer-attribution")
    ids, adapter = targets_and_adapter(ctx, "transformer-attribution")
    blocks = range(last + 1)
    with torch.enable_grad():
        run = record_attention(ctx.model, ctx.input.detach(), layout, blocks, grad=True)
        scores = ctx.head.scores(adapter(run.output), ids)
        probs = [run.probs[i] for i in blocks]
        grads = batched_grad(scores, probs)
    relevance = relevance_matrix([p.detach() for p in probs], [g.detach() for g in grads])
    return patch_grid(readout_rows(relevance, layout), layout, ctx, "transformer-attribution")
