"""Shapley-CAM.

Cai, "CAMs as Shapley Value-based Explainers", 2025 (arXiv:2501.06261). Grad-CAM's weights are
the first-order Taylor approximation of each channel's Shapley value in a cooperative game whose
players are the layer's activations; the second-order approximation subtracts half the
Hessian-vector product with the activations:

.. math::
    w_k^c = \\frac{1}{Z}\\sum_{i,j}\\Big(\\frac{\\partial u^c}{\\partial A^k_{ij}}
        - \\tfrac12\\,\\big(H^c A\\big)^k_{ij}\\Big), \\qquad
    L^c = \\mathrm{ReLU}\\Big(\\sum_k w_k^c A^k\\Big),
    \\qquad H^c = \\frac{\\partial^2 u^c}{\\partial A^2}

The utility ``u^c`` is the paper's ReST (residual softmax target-class) score, the logit plus the
log-probability, ``u^c = y^c + \\log p^c = y^c - \\mathrm{CE}(y, c)``. Behind a piecewise-linear
head (ReLU, pooling, linear) the Hessian of the logit is zero, and Shapley-CAM on the logit is
Grad-CAM; the log-probability brings the second-order term in there.

Cost: per target, one backward that keeps its graph and one more that gives ``H A``
(:mod:`camscope.core.extra_scores`), beside the engine's shared backward; no parameter gradient
is written. A custom autograd Function whose backward is marked ``once_differentiable`` has no
second derivative: Shapley-CAM is then skipped at that layer, with the reason.

Deviations: the paper treats softmax classifiers; for sigmoid heads (single-logit binary,
multi-label) camscope uses ``log p^c = log sigmoid(y^c)``. pytorch-grad-cam's ``ShapleyCAM``
explains whatever target it is given, by default the plain logit (``ClassifierOutputTarget``);
``method_options={"shapley_utility": "logit"}`` reproduces that (and works with callable
targets, which ReST does not). Fused attention kernels have no second derivatives: on a timm ViT
turn them off (``block.attn.fused_attn = False``), or Shapley-CAM is skipped with that advice.

Example:
    >>> explain(model, x, ["gradcam", "shapleycam"]).maps["shapleycam"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method
from ..core.targets import ClassHead
from ._common import channel_weighted, option_choice, spatial_mean

NAME = "shapleycam"
UTILITIES = ("rest", "logit")


def utility(options: Mapping[str, Any]) -> str:
    return option_choice(options, "shapley_utility", "rest", UTILITIES)


def rest_score(
    logits: Tensor, class_ids: Tensor, head: ClassHead, options: Mapping[str, Any]
) -> Tensor | None:
    """The ReST utility ``y^c + log p^c`` of every target (None: explain the logits themselves)."""
    if utility(options) == "logit":
        return None
    return head.scores(logits, class_ids) + head.log_probabilities(logits, class_ids)


@register_method(
    NAME,
    channel_contributions=True,
    own_score=rest_score,
    needs_hessian=True,
    paper="Cai, 2025",
    summary="Grad-CAM weights with a second-order (Hessian) term, on the ReST utility",
    passes=lambda q: 2 * q.targets,
    passes_text="2 x K (per target: a gradient that keeps its graph, a Hessian-vector product)",
)
def shapleycam(ctx: LayerContext) -> Tensor:
    """Channel weights: spatial mean of the gradient minus half the Hessian-vector product."""
    own = utility(ctx.method_options) == "rest"
    grads = ctx.require_own_gradients(NAME) if own else ctx.require_gradients()
    weights = spatial_mean(grads - 0.5 * ctx.require_hessian_products(NAME))
    return channel_weighted(weights, ctx.activations)
