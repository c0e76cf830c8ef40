"""Guided Backpropagation.

Springenberg et al., "Striving for Simplicity: The All Convolutional Net", ICLR workshop 2015,
Sec. 3.4: the gradient of the target score with respect to the input, where every ReLU passes back
only positive gradients at positive inputs:

.. math::
    R^{l} = (f^{l} > 0) \\cdot (R^{l+1} > 0) \\cdot R^{l+1}

The raw result is a signed ``(B, K, 3, H, W)`` image; ``maps`` holds its per-pixel magnitude
(max over colour channels of the absolute value), normalised. Deviations: the rule is applied to
activation *modules* (ReLU, ReLU6, LeakyReLU, ELU, SiLU, GELU, Hardswish, Mish) through forward
hooks, not to functional calls (``F.relu`` in a ``forward``); for non-ReLU activations only the
"positive gradients" half of the rule applies. Costs one extra forward and backward pass.
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method


@register_method(
    "guided-backprop",
    needs_gradients=False,
    needs_guided_gradients=True,
    paper="Springenberg et al., ICLR-W 2015",
    family="input gradient",
    class_specific="weakly",
    summary="fine-grained input gradients through activations that pass positive gradients; "
    "nearly the same image for every class",
    passes=2,
    passes_text="2 (one guided pass, shared)",
)
def guided_backprop(ctx: LayerContext) -> Tensor:
    """Input gradients through ReLUs that pass only positive gradients: fine, not class-discriminative."""
    if ctx.guided_gradients is None:
        raise RuntimeError("guided gradients were not computed")
    return ctx.guided_gradients
