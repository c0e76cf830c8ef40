"""Guided Grad-CAM.

Selvaraju et al., ICCV 2017, Sec. 3 ("Guided Grad-CAM"): the point-wise product of Guided
Backpropagation with the Grad-CAM map bilinearly upsampled to the input resolution, giving
high-resolution and class-discriminative maps.

.. math::
    \\text{Guided Grad-CAM}^c = R_{\\text{guided}}^c \\odot \\mathrm{up}(L^c_{\\text{Grad-CAM}})

Deviation: the upsampled Grad-CAM is min-max normalised to [0, 1] before the product (scale only).
"""

from __future__ import annotations

from torch import Tensor

from ..core.context import LayerContext
from ..core.ops import to_input_space
from ..core.registry import register_method
from .gradcam import gradcam


@register_method(
    "guided-gradcam",
    needs_guided_gradients=True,
    paper="Selvaraju et al., ICCV 2017",
    family="input gradient x gradient",
    summary="guided backprop x upsampled Grad-CAM: fine-grained and class-discriminative",
    passes=2,
    passes_text="2 (one guided pass, shared)",
)
def guided_gradcam(ctx: LayerContext) -> Tensor:
    """Guided Backpropagation x upsampled Grad-CAM: fine-grained and class-discriminative."""
    if ctx.guided_gradients is None:
        raise RuntimeError("guided gradients were not computed")
    size = (ctx.guided_gradients.shape[-2], ctx.guided_gradients.shape[-1])
    coarse = to_input_space(gradcam(ctx).sum(dim=2), size)  # (B, K, H, W) in [0, 1]
    return ctx.guided_gradients * coarse[:, :, None]
