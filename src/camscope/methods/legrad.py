"""LeGrad.

Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, "LeGrad: An Explainability Method for Vision
Transformers via Feature Formation Sensitivity", 2024 (arXiv:2404.03214). Every selected block
``l`` gets its own class score ``s^l``: the model's head (final norm, classifier) applied to the
mean of the block's output tokens. The map is the gradient of that score with respect to the
block's attention probabilities, positive part, averaged over heads and query tokens, then over
the blocks:

.. math::
    s^l = \\mathrm{head}\\big(\\mathrm{norm}(\\tfrac{1}{N}\\textstyle\\sum_i z^l_i)\\big)_c,\\qquad
    E^l = \\frac{1}{H N}\\sum_{h, i} \\Big(\\frac{\\partial s^l}{\\partial A^l_{h,i,:}}\\Big)^+,
    \\qquad L^c = \\frac{1}{|\\mathcal{B}|}\\sum_{l \\in \\mathcal{B}} E^l[\\text{patch tokens}]

The attention values are not multiplied in. Blocks ``\\mathcal{B}``: the last four up to and
including the block of the chosen layer (the last four at the default ``auto`` layer, as in
torchcam's example; the authors' code starts at the second-to-last block by default). The mean
over the tokens (class token included) follows the authors' code and torchcam 0.5 ``LeGrad``,
which this method equals up to float rounding on random torchvision ViTs (vit_b_16 with
torchcam's example settings: r = 1.0; ``tests/methods/test_vit_agreement.py``). One forward
with the attention in the graph (:mod:`camscope.core.attention`), then per block one backward
through that block and the head, batched over the targets.

ViTs only (:data:`camscope.core.attention.SUPPORTED`). The head is the model's own: for timm
``forward_head(norm(tokens))`` on the sequence whose every token is the mean token (so class-token,
average-pooling and distilled heads all see that mean), for torchvision ``heads(ln(mean))``.

Deviations: the passes run in eval mode whatever ``mode`` says; the authors' CLIP setting scores
the normalised embedding against a text embedding, here it is the classifier's logit;
callable targets are not supported.

Example:
    >>> explain(vit, x, methods="legrad", targets="topk:3").maps["legrad"].shape  # doctest: +SKIP
    torch.Size([1, 3, 224, 224])
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.attention import record_attention
from ..core.context import LayerContext
from ..core.passes import batched_grad
from ..core.registry import register_method
from ._transformer import layout_and_last_block, patch_grid, targets_and_adapter

#: Blocks LeGrad reads, ending at the chosen layer's block.
BLOCKS = 4


def _mean_token(tokens: Tensor) -> Tensor:
    """Every token replaced by the mean token (the head then reads that mean, however it pools)."""
    return tokens.mean(1, keepdim=True).expand_as(tokens)


@register_method(
    "legrad",
    needs_gradients=False,
    uses_gradients=True,
    models="transformer",
    family="attention gradient",
    paper="Bousselham et al., 2024",
    summary="ViTs: positive gradients of each of the last 4 blocks' own score w.r.t. its attention",
    passes=lambda q: 1 + q.targets,
    passes_text="1 + K (own forward; per target one backward through each of the 4 blocks)",
)
def legrad(ctx: LayerContext) -> Tensor:
    """Gradients of each block's class score with respect to its attention, last four blocks."""
    layout, last = layout_and_last_block(ctx, "legrad")
    ids, _ = targets_and_adapter(ctx, "legrad")
    blocks = range(max(0, last - BLOCKS + 1), last + 1)
    per_block = []
    with torch.enable_grad():
        run = record_attention(
            ctx.model, ctx.input.detach(), layout, blocks, grad=True, block_tokens=_mean_token
        )
        for n, i in enumerate(blocks):
            scores = ctx.head.scores(run.logits[i], ids)
            (grad,) = batched_grad(scores, [run.probs[i]], retain_graph=n < len(blocks) - 1)
            per_block.append(grad.detach().float().clamp(min=0).mean(dim=(2, 3)))  # (B, K, N)
    return patch_grid(torch.stack(per_block).mean(0), layout, ctx, "legrad")
