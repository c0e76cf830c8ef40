"""Recipro-CAM.

Byun & Lee, "Recipro-CAM: Fast gradient-free visual explanations for convolutional neural
networks", arXiv:2209.14074 (2022); the default CNN method of OpenVINO XAI. For each position
``(i, j)`` of the layer output ``A`` (``C x h x w``), the network after the layer ``g`` runs on
``A`` with every other position set to zero; the map at ``(i, j)`` is the target's probability:

.. math::
    M^{(i,j)}_{ab} = [a = i,\\, b = j],\\qquad
    L^c_{ij} = \\mathrm{softmax}\\big(g(A \\odot M^{(i,j)})\\big)_c

(the sigmoid of the target's logit for a single-logit or multi-label head). That is ``h w``
inputs of the network's tail (49 for ResNet-50 at ``layer4``), run in batches through the
layers after the target only: the same prefix-free path as Ablation-CAM
(:class:`camscope.perturbation.ablation.Tail`), so nothing before the layer runs again.

Speed: on EfficientNet-Lite0 at ``bn2`` (7 x 7 x 1280), one 224 x 224 image on CPU with one
thread, a whole ``explain`` call took 0.13 s against Score-CAM's 20.3 s (median of 3, shared
2-core machine): 160x faster (``benchmarks/reciprocam_speed.py``). The paper reports about 148x
against Score-CAM on its own setup.

Options: ``batch_size``, ``progress``. Example:

    >>> explain(model, x, "reciprocam")  # doctest: +SKIP

Deviations: the positions are kept one by one (the official code's default; its 3 x 3 Gaussian
spread of each position is not offered); the passes run in eval mode; the layer output must be
the ``(B, C, h, w)`` feature map itself (token layers of transformers are not supported: their
variant, ViT-Recipro-CAM, masks tokens); callable targets are not supported.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import PassQuery, register_method
from ..errors import UsageError
from ..perturbation.ablation import tails
from ..perturbation.options import PassCounter, Settings, class_targets


def position_rows(act: Tensor, positions: Tensor) -> Tensor:
    """Copies of ``act`` ``(1, C, h, w)`` that keep only position ``positions[i]`` (row-major
    index) in row ``i``: ``(n, C, h, w)``."""
    _, _, h, w = act.shape
    keep = torch.zeros(positions.numel(), h * w, dtype=act.dtype, device=act.device)
    keep[torch.arange(positions.numel(), device=act.device), positions.to(act.device)] = 1
    return act * keep.view(-1, 1, h, w)


def _passes(q: PassQuery) -> int:
    positions = q.positions or max(1, (q.input_size[0] // 32) * (q.input_size[1] // 32))
    return positions + 1


@register_method(
    "reciprocam",
    needs_gradients=False,
    paper="Byun & Lee, 2022",
    family="perturbation",
    summary="the target's probability when the layers after the target see one position alone",
    passes=_passes,
    passes_text="h w + 1 (h w = positions of the layer; only the layers after the target)",
)
def reciprocam(ctx: LayerContext) -> Tensor:
    """The target's probability from the network's tail fed one feature-map position at a time."""
    settings = Settings.read(ctx.method_options)
    ids = class_targets(ctx.class_ids, "reciprocam")
    b, k = ids.shape
    maps = []
    with tails(ctx.model, ctx.layer, settings, "reciprocam") as record:
        for img in range(b):
            tail = record(ctx.input[img : img + 1].detach())
            act = tail.act
            if act.ndim != 4 or tuple(act.shape[1:]) != tuple(ctx.activations.shape[1:]):
                raise UsageError(
                    f"reciprocam: layer {ctx.layer!r} outputs {tuple(act.shape)}, not the "
                    f"(B, C, h, w) map {tuple(ctx.activations.shape)}; it masks positions of a "
                    "convolutional feature map (pick such a layer)"
                )
            n = act.shape[-2] * act.shape[-1]
            probabilities = torch.empty(n, k, device=act.device)
            batch = tail.batch_size(n)
            progress = PassCounter(n, settings.progress, "reciprocam")
            try:
                for start in range(0, n, batch):
                    positions = torch.arange(start, min(n, start + batch), device=act.device)
                    logits = tail.run(position_rows(act, positions))
                    targets = ids[img][None].expand(positions.numel(), -1)
                    probabilities[positions] = ctx.head.probabilities(logits, targets)
                    progress.step(positions.numel())
            finally:
                progress.close()
            maps.append(probabilities.T.reshape(k, *act.shape[-2:]))
    return torch.stack(maps).to(ctx.activations)
