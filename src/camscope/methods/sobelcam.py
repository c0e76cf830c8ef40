"""Sobel-CAM: the edges of the input image, a baseline that ignores the model.

A baseline from the pytorch-grad-cam project (``sobel_cam``; no paper of its own): the Sobel edge
magnitude (Sobel & Feldman, 1968) of the grey input. A map that explains the model should beat it
on the evaluation metrics; one that does not mostly follows edges.

.. math::
    G = 0.299 R + 0.587 G + 0.114 B, \\qquad
    L = \\tfrac12\\,|S_x * G| + \\tfrac12\\,|S_y * G|,
    \\qquad S_x = \\begin{pmatrix}-1&0&1\\\\-2&0&2\\\\-1&0&1\\end{pmatrix},\\ S_y = S_x^\\top

at input resolution, with the borders reflected (OpenCV's default). Model-, layer- and
class-agnostic: it reads only the input, so it adds no pass.

Deviations from pytorch-grad-cam: it takes the model input (normalised, float) rather than the
8-bit picture, so it has no rounding and no clipping of strong edges at 255 (OpenCV's
``convertScaleAbs``); the per-channel normalisation changes the grey weights slightly (ImageNet's
standard deviations differ by under 3%). Inputs with other than 3 channels use their channel
mean as the grey image.

Example:
    >>> explain(model, x, ["gradcam", "sobelcam"]).maps["sobelcam"]  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import register_method

GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights, as OpenCV's RGB -> grey


def sobel_magnitude(images: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, H, W)``: half the absolute x and y Sobel responses of the grey
    image, borders reflected (H and W of at least 2)."""
    x = images.float()
    if x.shape[1] == 3:
        grey = (x * x.new_tensor(GREY).view(1, 3, 1, 1)).sum(1, keepdim=True)
    else:
        grey = x.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
    kernels = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3)
    edges = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="reflect"), kernels)
    return 0.5 * edges.abs().sum(1)


@register_method(
    "sobelcam",
    needs_gradients=False,
    class_specific=False,
    family="image baseline",
    paper="Gildenblat et al. 2021 (pytorch-grad-cam), a baseline",
    summary="Sobel edges of the input image; ignores the model (a baseline to beat)",
)
def sobelcam(ctx: LayerContext) -> Tensor:
    """Sobel edge magnitude of the grey input, the same for every class."""
    edges = sobel_magnitude(ctx.input)
    return edges[:, None].expand(-1, ctx.scores.shape[1], -1, -1)
