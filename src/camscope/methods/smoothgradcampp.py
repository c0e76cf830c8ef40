"""Smooth Grad-CAM++.

Omeiza et al., "Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique for Deep
Convolutional Neural Network Models", arXiv:1908.01224 (2019). Grad-CAM++ (see :mod:`.gradcampp`)
with the first, second and third derivatives averaged over ``N`` noisy copies of the input
``x + \\epsilon_i``, ``\\epsilon_i \\sim \\mathcal{N}(0, \\sigma^2)``:

.. math::
    D_p = \\frac{1}{N}\\sum_i \\Big(\\frac{\\partial S^c(x+\\epsilon_i)}{\\partial A^k}\\Big)^p,\\quad
    \\alpha^{kc}_{ij} = \\frac{D_2}{2 D_2 + \\sum_{a,b} A^k_{ab} D_3},\\quad
    w_k^c = \\sum_{i,j} \\alpha^{kc}_{ij}\\,\\mathrm{ReLU}(D_1)

with ``A`` the activations of the clean input. Options: ``num_samples`` (default 8),
``noise_level`` (sigma as a fraction of each image's value range, default 0.15, the level
SmoothGrad recommends), ``seed`` (default 0), ``batch_size``.

Deviations: the noisy passes run in eval mode; ``alpha`` is zero where its denominator is zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.concurrency import PassScope
from ..core.context import LayerContext
from ..core.layers import preserved_modes
from ..core.registry import register_method
from ..errors import UsageError
from ..perturbation.options import Settings, class_targets, option, positive_int
from ._common import channel_weighted


def noisy_gradients(ctx: LayerContext, n: int, level: float, seed: int, batch: int) -> Tensor:
    """Layer gradients of the target scores for ``n`` noisy copies: ``(n, B, K, C, h, w)``."""
    settings = Settings.read(ctx.method_options)
    x = ctx.input.detach()
    ids = class_targets(ctx.class_ids, "smoothgradcam++").to(x.device)
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, 1, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    # one draw shared by every image of the batch, so an image's map does not depend on its
    # position in the batch or on the other images (a batch of two == two single calls)
    noise = torch.randn((n, 1, *x.shape[1:]), generator=gen).to(x) * (level * span)
    inputs = (x[None] + noise).flatten(0, 1)  # (n*B, ...)
    row_ids = ids.repeat(n, 1)
    module = dict(ctx.model.named_modules())[ctx.layer]
    grads = []
    scope = PassScope()  # the hook ignores other threads' forwards of this model
    with preserved_modes(ctx.model), torch.enable_grad():
        ctx.model.eval()
        for start in range(0, inputs.shape[0], batch):
            store: list[Tensor] = []

            def hook(
                _m: torch.nn.Module, _i: object, out: Tensor, store: list[Tensor] = store
            ) -> Tensor:
                out = out if out.requires_grad else out.detach().requires_grad_()
                store.append(out)
                return out.clone()

            handle = module.register_forward_hook(scope.hook(hook))
            try:
                with scope.active():
                    logits = settings.adapter(ctx.model(inputs[start : start + batch]))
            finally:
                handle.remove()
            scores = ctx.head.scores(logits, row_ids[start : start + batch])
            k = scores.shape[1]
            cols = [
                torch.autograd.grad(scores[:, j].sum(), store[0], retain_graph=j < k - 1)[0]
                for j in range(k)
            ]
            grads.append(torch.stack(cols, 1).detach().float())
    g = torch.cat(grads)  # (n*B, K, ...)
    return g.reshape(n, x.shape[0], *g.shape[1:])


@register_method(
    "smoothgradcam++",
    channel_contributions=True,
    needs_gradients=False,
    uses_gradients=True,
    paper="Omeiza et al., 2019",
    family="gradient (noisy passes)",
    summary="Grad-CAM++ with derivatives averaged over noisy copies of the input",
    passes=lambda q: q.option("num_samples", 8) * (1 + q.targets),
    passes_text="N x (1 + K), N = num_samples (8)",
)
def smoothgradcampp(ctx: LayerContext) -> Tensor:
    """Grad-CAM++ with derivatives averaged over noisy copies of the input (default 8)."""
    opts = ctx.method_options
    n = positive_int(opts, "num_samples", 8) or 8
    level = float(option(opts, "noise_level", 0.15, (int, float)))
    seed = int(option(opts, "seed", 0, int))
    batch = positive_int(opts, "batch_size", 32) or 32
    g = noisy_gradients(ctx, n, level, seed, batch)
    if g.shape[-3:] != ctx.activations.shape[-3:]:
        raise UsageError(
            f"smoothgradcam++ needs layer {ctx.layer!r} to output (B, C, h, w) itself; "
            "reshape= is not supported for it"
        )
    d1, d2, d3 = g.mean(0), g.pow(2).mean(0), g.pow(3).mean(0)
    acts = ctx.activations[:, None]
    denominator = 2 * d2 + acts.sum(dim=(-2, -1), keepdim=True) * d3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where(denominator != 0, d2 / safe, torch.zeros_like(d2))
    weights = (alpha * d1.clamp(min=0)).sum(dim=(-2, -1))
    return channel_weighted(weights, ctx.activations)
