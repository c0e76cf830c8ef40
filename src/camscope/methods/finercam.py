"""Finer-CAM.

Zhang et al., "Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation",
CVPR 2025 (arXiv:2501.11309). A gradient CAM of the *difference* between the target's logit and
those of the classes the model finds most similar, which suppresses the evidence the target
shares with them and keeps what tells it apart:

.. math::
    s^c = y^c - \\frac{\\alpha}{T}\\sum_{t=1}^{T} y^{d_t}, \\qquad
    L^c = \\text{base}\\Big(A, \\frac{\\partial s^c}{\\partial A}\\Big)

``d_1..d_T`` are the ``T`` classes whose logits are closest to ``y^c`` (``|y^d - y^c|``; for the
top-1 target, the runners-up), ``alpha`` the comparison strength, and ``base`` a gradient CAM
(Grad-CAM by default, so ``w_k = mean_ij ds^c/dA^k``). The paper makes ``alpha`` a knob
(0: the base method; larger: finer details); camscope's defaults are ``T = 3`` and ``alpha = 1``,
the full comparison (pytorch-grad-cam's defaults too). Options: ``finer_references`` (``T``, at most the number of other classes), ``finer_alpha``,
``finer_base`` (``gradcam``, ``gradcam++``, ``layercam``, ``hirescam``, ``xgradcam``) and
``finer_weighting``.

Cost: ``s^c`` is one more column of the engine's shared batched backward (per target): no pass
of its own.

Peers and deviations: torchcam's ``FinerCAM`` computes the same score with ``alpha = 0.6``
(``gamma``), the value the authors' code (github.com/Imageomics/Finer-CAM) uses for three
references; pass ``finer_alpha=0.6`` for it. pytorch-grad-cam's ``FinerCAM`` (``alpha = 1``, ranks 1-3 by logit
distance) weights every comparison by the softmax probability of the compared class and
differentiates through those weights,
``s^c = sum_t p_t (y^c - alpha y^{d_t}) / (sum_t p_t + 10^-9)``; ``finer_weighting="softmax"``
reproduces it. Class targets only (a callable target has no classes to compare with);
for a single-logit binary classifier the one other class is ``-y``, so Finer-CAM is
``(1 + alpha)`` times the base method.

Example:
    >>> explain(model, x, "finercam", method_options={"finer_alpha": 0.6})  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import lookup, register_method
from ..core.targets import ClassHead
from ..errors import UsageError
from ._common import method_option, option_choice

NAME = "finercam"
BASES = ("gradcam", "gradcam++", "layercam", "hirescam", "xgradcam")
WEIGHTINGS = ("mean", "softmax")


@dataclasses.dataclass(frozen=True)
class FinerSettings:
    alpha: float
    references: int
    weighting: str
    base: str

    @classmethod
    def read(cls, options: Mapping[str, Any]) -> FinerSettings:
        references = int(method_option(options, "finer_references", 3, int))
        if references < 1:
            raise UsageError(f"method option 'finer_references' must be >= 1, got {references}")
        return cls(
            alpha=float(method_option(options, "finer_alpha", 1.0, (int, float))),
            references=references,
            weighting=option_choice(options, "finer_weighting", "mean", WEIGHTINGS),
            base=option_choice(options, "finer_base", "gradcam", BASES),
        )


def most_similar(every: Tensor, class_ids: Tensor, count: int) -> Tensor:
    """``(B, K, T)``: for every target, the ``T`` other classes with the closest scores (ties:
    lower class index first). ``every`` is ``(B, n)``, ``class_ids`` ``(B, K)``."""
    target = every.gather(1, class_ids)
    distance = (every[:, None, :] - target[..., None]).abs()
    distance = distance.scatter(2, class_ids[..., None], float("inf"))
    return distance.argsort(dim=2, stable=True)[..., : min(count, every.shape[1] - 1)]


def finer_score(
    logits: Tensor, class_ids: Tensor, head: ClassHead, options: Mapping[str, Any]
) -> Tensor:
    """``(B, K)`` differentiable comparison scores ``s^c`` (see the module docstring)."""
    settings = FinerSettings.read(options)
    ids = class_ids.to(logits.device)
    b, k = ids.shape
    n = head.num_classes(logits)
    every = head.scores(logits, torch.arange(n, device=logits.device).expand(b, n))
    references = most_similar(every.detach(), ids, settings.references)
    target = every.gather(1, ids)
    compared = every[:, None, :].expand(b, k, n).gather(2, references)
    if settings.weighting == "mean":
        return target - settings.alpha * compared.mean(dim=2)
    probabilities = head.class_probabilities(logits)[:, None, :].expand(b, k, n)
    weights = probabilities.gather(2, references)
    differences = target[..., None] - settings.alpha * compared
    return (weights * differences).sum(dim=2) / (weights.sum(dim=2) + 1e-9)


@register_method(
    NAME,
    channel_contributions=True,
    own_score=finer_score,
    paper="Zhang et al., CVPR 2025",
    summary="a gradient CAM of the target's logit minus its most similar classes': what tells "
    "it apart from them",
    passes_text="0 (one more column of the shared backward)",
)
def finercam(ctx: LayerContext) -> Tensor:
    """The base gradient method (Grad-CAM by default) on the gradients of the comparison score."""
    settings = FinerSettings.read(ctx.method_options)
    grads = ctx.require_own_gradients(NAME)
    base = lookup(settings.base)
    return base.fn(dataclasses.replace(ctx, gradients=grads, cache={}))
