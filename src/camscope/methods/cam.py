"""CAM: Class Activation Mapping.

Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016, Eq. 2: for a
network that ends in global average pooling and a linear classifier with weights ``w^c``,

.. math::
    M_c(x, y) = \\sum_k w^c_k\\, f_k(x, y)

No gradients are needed. camscope checks the premise instead of assuming it: the chosen layer must
reproduce the model's target scores through ``mean_{xy} f`` and the classifier (to 1e-3), otherwise
an :class:`~camscope.errors.UnsupportedModelError` says which layer to choose. Deviation: the
paper shows ``M_c`` unclipped; ``maps`` (like every method's) clamp negatives to zero, ``raw``
keeps the signed map.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.context import LayerContext
from ..core.registry import register_method
from ..errors import UnsupportedModelError
from ._common import channel_weighted


def find_classifier(model: nn.Module) -> nn.Linear:
    """The model's final linear layer (timm's ``get_classifier()`` first, else the last Linear)."""
    getter = getattr(model, "get_classifier", None)
    head = getter() if callable(getter) else None
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UnsupportedModelError(
            f"CAM needs a linear classifier after global average pooling; {type(model).__name__} "
            "has no nn.Linear. Use a gradient method such as 'gradcam' instead."
        )
    return linears[-1]


@register_method(
    "cam",
    channel_contributions=True,
    needs_gradients=False,
    paper="Zhou et al., CVPR 2016",
    family="activation x classifier weight",
    summary="classifier weights applied to the last feature maps; GAP + linear heads only "
    "(checked)",
)
def cam(ctx: LayerContext) -> Tensor:
    """Classifier weights of the target class applied to the last feature maps (GAP + linear heads)."""
    if bool((ctx.class_ids < 0).any()):
        raise UnsupportedModelError(
            "CAM explains class scores; it cannot explain a callable target"
        )
    linear = find_classifier(ctx.model)
    channels = ctx.activations.shape[1]
    if linear.in_features != channels:
        raise UnsupportedModelError(
            f"CAM: layer {ctx.layer!r} has {channels} channels but the classifier expects "
            f"{linear.in_features}; choose the layer that feeds the global average pooling"
        )
    rows, sign = ctx.class_ids, torch.ones_like(ctx.class_ids, dtype=torch.float32)
    if ctx.head.kind == "binary":  # one logit: class 1 is +logit, class 0 is -logit
        rows, sign = torch.zeros_like(ctx.class_ids), (2 * ctx.class_ids - 1).float()
    weight = linear.weight.detach().float()[rows] * sign[..., None]  # (B, K, C)
    bias = linear.bias.detach().float()[rows] * sign if linear.bias is not None else 0.0
    pooled = ctx.activations.mean(dim=(-2, -1))
    predicted = torch.einsum("bkc,bc->bk", weight, pooled) + bias
    # Relative to the size of the terms summed; low-precision (bfloat16/float16) models round
    # every term, so their tolerance follows the dtype's resolution.
    terms = torch.einsum("bkc,bc->bk", weight.abs(), pooled.abs()) + torch.as_tensor(bias).abs()
    relative = max(1e-3, 4 * torch.finfo(linear.weight.dtype).eps)
    tolerance = relative * torch.maximum(terms, ctx.scores.abs()).clamp(min=1.0)
    if not bool(((predicted - ctx.scores).abs() <= tolerance).all()):
        raise UnsupportedModelError(
            f"CAM: the output of layer {ctx.layer!r} does not reach the scores through global "
            "average pooling and the linear classifier alone (another layer, dropout in train "
            "mode or a different head lies between); choose the layer right before the pooling "
            "(see `camscope layers`), or use 'gradcam', which equals CAM on such heads"
        )
    return channel_weighted(weight, ctx.activations)
