"""ViT-Recipro-CAM.

Byun & Lee, "ViT-ReciproCAM: Gradient and Attention-Free Visual Explanations for Vision
Transformer", 2023 (arXiv:2310.02588). Gradient-free and attention-free: the token output of the
chosen layer is copied once per patch position ``(i, j)``; copy ``(i, j)`` keeps the prefix tokens
(class token) and the patch tokens around ``(i, j)`` weighted by a 3x3 Gaussian kernel ``G``
(1/4 centre, 1/8 edges, 1/16 corners, cut off at the border), and zeroes every other patch token.
The network after the layer scores every copy, in batches, and the map is the target's softmax
probability per position:

.. math::
    F^{(i,j)}_{p} = G_{p - (i,j)}\\, F_p \\;(\\text{patch } p), \\qquad F^{(i,j)}_{\\text{cls}} =
    F_{\\text{cls}}, \\qquad L^c_{ij} = \\mathrm{softmax}\\big(f_{\\text{suffix}}(F^{(i,j)})\\big)_c

Only the layers after the target run for the copies, through the same path as Ablation-CAM
(:class:`camscope.perturbation.ablation.Tail`; what is exact there, and the fallback, hold
here too). At a block's first LayerNorm (the default ``auto`` layer, ``blocks.{L-1}.norm1``) only
that block's attention sees the masked tokens while its residual keeps the full ones, exactly as
the authors' code hooks the LayerNorm. Options: ``batch_size``, ``progress``.

The layer must output tokens ``(B, N, C)`` whose patch tokens fill the layer's grid; CNN maps
are refused (the CNN Recipro-CAM is a separate method). Cost: ``h·w + 1`` passes per image, ``h·w``
of them only through the layers after the target.

Deviations: the authors' code defaults to the second-to-last block (``block_index=-2``); here the
layer is the call's (``layer="blocks.10.norm1"`` for theirs); every prefix token (distillation,
registers) is kept like the class token; the passes run in eval mode; for single-logit and
multi-label heads the probability is the sigmoid; callable targets are not supported.

Example:
    >>> explain(vit, x, methods="vit-reciprocam").maps["vit-reciprocam"]  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import PassQuery, register_method
from ..errors import UsageError
from ..perturbation.ablation import tails
from ..perturbation.options import PassCounter, Settings, class_targets

#: The authors' 3x3 Gaussian kernel.
GAUSSIAN = torch.tensor([[1 / 16, 1 / 8, 1 / 16], [1 / 8, 1 / 4, 1 / 8], [1 / 16, 1 / 8, 1 / 16]])


def position_weights(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(h*w, h*w)``: row ``k`` holds the weight of every patch position in copy ``k`` (the
    kernel centred on ``k``, cut off at the border)."""
    spikes = torch.eye(h * w, dtype=dtype, device=device).reshape(h * w, 1, h, w)
    kernel = GAUSSIAN.to(dtype=dtype, device=device)[None, None]
    return F.conv2d(spikes, kernel, padding=1).reshape(h * w, h * w)


def masked_tokens(act: Tensor, weights: Tensor, positions: Tensor) -> Tensor:
    """Copies of the token output ``act`` ``(1, N, C)``, one per position in ``positions``: the
    prefix tokens kept, the patch tokens scaled by that position's row of ``weights``."""
    prefix = act.shape[1] - weights.shape[1]
    n = positions.numel()
    patches = act[:, prefix:] * weights[positions][:, :, None]
    return torch.cat([act[:, :prefix].expand(n, -1, -1), patches], dim=1)


def _passes(query: PassQuery) -> int:
    # h*w suffix passes and the recording one; without a known grid, 16-pixel patches
    positions = query.positions or (query.input_size[0] // 16) * (query.input_size[1] // 16)
    return positions + 1


@register_method(
    "vit-reciprocam",
    needs_gradients=False,
    models="transformer",
    family="perturbation",
    paper="Byun & Lee, 2023 (arXiv:2310.02588)",
    summary="ViTs: class probability with all but one patch token's neighbourhood masked",
    passes=_passes,
    passes_text="h·w + 1 (h·w = patch tokens; those passes only the layers after the target)",
)
def vit_reciprocam(ctx: LayerContext) -> Tensor:
    """Softmax probability of the target with the tokens masked around each patch position."""
    settings = Settings.read(ctx.method_options)
    ids = class_targets(ctx.class_ids, "vit-reciprocam")
    b, k = ids.shape
    h, w = ctx.activations.shape[-2:]
    n = h * w
    maps = []
    with tails(ctx.model, ctx.layer, settings, "vit-reciprocam") as record:
        for img in range(b):
            tail = record(ctx.input[img : img + 1].detach())
            act = tail.act
            if act.ndim != 3 or act.shape[1] < n:
                raise UsageError(
                    f"vit-reciprocam masks the patch tokens of a transformer layer; layer "
                    f"{ctx.layer!r} outputs shape {tuple(act.shape)}, not (batch, tokens, "
                    f"channels) with {h}x{w} patch tokens. Pick a ViT block's layer (the "
                    "default 'auto')"
                )
            weights = position_weights(h, w, act.dtype, act.device)
            probabilities = torch.empty(n, k, device=act.device)
            batch = tail.batch_size(n)
            progress = PassCounter(n, settings.progress, "vit-reciprocam")
            try:
                for start in range(0, n, batch):
                    positions = torch.arange(start, min(n, start + batch), device=act.device)
                    logits = tail.run(masked_tokens(act, weights, positions))
                    targets = ids[img][None].expand(positions.numel(), -1)
                    probabilities[positions] = ctx.head.probabilities(logits, targets)
                    progress.step(positions.numel())
            finally:
                progress.close()
            maps.append(probabilities.T.reshape(k, h, w))
    return torch.stack(maps).to(ctx.activations)
