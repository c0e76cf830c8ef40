"""Random-CAM: channels weighted at random, the floor any CAM method should beat.

A sanity baseline from the pytorch-grad-cam project (``RandomCAM``; no paper of its own), in the
spirit of the model- and data-randomisation checks of Adebayo et al., "Sanity Checks for Saliency
Maps", NeurIPS 2018: an evaluation metric that scores a method no better than this map says little
about that method.

.. math::
    L = \\mathrm{ReLU}\\Big(\\sum_k w_k A^k\\Big), \\qquad w_k \\sim \\mathcal{U}(-1, 1)

Class-agnostic and gradient-free. The weights come from a generator seeded with the method option
``seed`` (default 0), so a call is reproducible.

Deviations from pytorch-grad-cam: there every image draws its own weights from NumPy's global
random state (unseeded, so every call differs) and a backward pass is run although the weights
ignore it; here one seeded draw of ``C`` weights serves every image and target (a batch gives the
maps of single calls) and no backward runs.

Example:
    >>> explain(model, x, "randomcam", method_options={"seed": 3})  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ._common import channel_weighted, method_option


def random_weights(channels: int, seed: int) -> Tensor:
    """``(C,)`` weights drawn uniformly from [-1, 1) by a CPU generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(channels, generator=generator, dtype=torch.float32) * 2 - 1


@register_method(
    "randomcam",
    needs_gradients=False,
    class_specific=False,
    channel_contributions=True,
    family="baseline",
    paper="Gildenblat et al. 2021 (pytorch-grad-cam), a sanity baseline",
    summary="channels weighted at random (seed option): the floor other methods should beat",
)
def randomcam(ctx: LayerContext) -> Tensor:
    """Random channel weights in [-1, 1), the same for every image and target."""
    seed = int(method_option(ctx.method_options, "seed", 0, int))
    b, c = ctx.activations.shape[:2]
    k = ctx.scores.shape[1]
    weights = random_weights(c, seed).to(ctx.activations.device)
    return channel_weighted(weights.expand(b, k, c), ctx.activations)
