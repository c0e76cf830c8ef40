"""SESS: Saliency Enhancing with Scaling and Sliding.

Tyagi, Sahu, Alahari & Jawahar, "SESS: Saliency Enhancing with Scaling and Sliding", ECCV 2022
(arXiv:2207.01769); pytorch-grad-cam's ``SESS``. A wrapper around a base method (Grad-CAM by
default): the image is resized so that its shorter side is each of ``n`` scales
``s_i = w + i\\,\\mathrm{round}(2w/7)`` (``w`` = the window, the input's shorter side: 224, 288, ...,
928 for a 224 x 224 input and 12 scales), a ``w x w`` window slides over every scaled image with
stride ``w`` (the last window of a row or column shifted back inside), and the base method
explains every crop ``p`` for the target ``c``. Each crop's normalised map is weighted by the
crop's probability for ``c`` relative to the best crop, pasted back where it came from and
resized to the input; the maps are fused by the mean over the crops that cover each pixel with a
positive value, and smoothed:

.. math::
    L^c = G_{11, \\sigma=5} * \\frac{\\sum_p \\mathrm{Up}_p(w_p M_p)}
        {\\sum_p [\\mathrm{Up}_p(w_p M_p) > 0]},\\qquad
    w_p = \\frac{P(c \\mid p)}{\\max_q P(c \\mid q)}

The crops run through the engine (``LayerContext.explain``) in batches, at the call's layer, so
every base method and every layer that works on the image works on its crops.

Options: ``base_method`` (default ``"gradcam"``), ``num_scales`` (default 12), ``batch_size``
(crops per call, default 32). Example:

    >>> explain(model, x, "sess", method_options={"base_method": "layercam"})  # doctest: +SKIP

Deviations: pytorch-grad-cam's defaults are kept (no pre-filtering of low-scoring crops, the
mean fusion with threshold 0, the 11 x 11 Gaussian blur with sigma 5, reflecting at the border);
the window is the input's shorter side, so every scale enlarges the image (bilinear, like
torchvision's ``resize``) and the pasted maps are shrunk back (bilinear, like OpenCV's
``resize``). Callable targets are not supported (the crops are scored by class).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.context import LayerContext
from ..core.registry import PassQuery, register_method
from ..errors import UsageError
from ..perturbation.options import class_targets, positive_int
from ._common import base_method

DEFAULT_BASE = "gradcam"
SCALE_STEP = 2 / 7
BLUR_SIZE, BLUR_SIGMA = 11, 5.0
_OWN_OPTIONS = ("base_method", "num_scales")


def window_starts(length: int, window: int) -> list[int]:
    """Starts of windows of size ``window`` with stride ``window`` covering ``length``; the last
    one shifted back inside."""
    starts = []
    for start in range(0, length, window):
        if start + window >= length:
            starts.append(max(length - window, 0))
            break
        starts.append(start)
    return starts


def scaled_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """``(height, width)`` with the shorter side ``shorter`` (torchvision ``resize(img, int)``)."""
    h, w = size
    if h <= w:
        return shorter, int(shorter * w / h)
    return int(shorter * h / w), shorter


def plan(
    size: tuple[int, int], num_scales: int
) -> list[tuple[tuple[int, int], list[tuple[int, int]]]]:
    """Per scale: the scaled ``(height, width)`` and the ``(top, left)`` corner of every crop."""
    window = min(size)
    step = round(window * SCALE_STEP)
    out = []
    for i in range(num_scales):
        h, w = scaled_size(size, window + step * i)
        corners = [(y, x) for y in window_starts(h, window) for x in window_starts(w, window)]
        out.append(((h, w), corners))
    return out


def crop_count(size: tuple[int, int], num_scales: int) -> int:
    return sum(len(corners) for _, corners in plan(size, num_scales))


def _passes(q: PassQuery) -> int:
    crops = crop_count(q.input_size, q.option("num_scales", 12))
    try:
        per_crop = 2 + base_method(q.options, DEFAULT_BASE, "sess").passes_per_image(q)
    except Exception:  # an invalid base method: the run itself will say why
        per_crop = 2
    return crops * per_crop * max(1, q.targets)


def _reflected(n: int, r: int, device: torch.device) -> Tensor:
    """Indices of ``-r .. n - 1 + r`` mirrored into ``0 .. n - 1`` without repeating the edge
    (OpenCV's ``BORDER_REFLECT_101``, as often as a kernel wider than the image needs)."""
    if n == 1:
        return torch.zeros(n + 2 * r, dtype=torch.long, device=device)
    period = 2 * (n - 1)
    p = torch.arange(-r, n + r, device=device).abs() % period
    return torch.where(p >= n, period - p, p)


def gaussian_blur(maps: Tensor, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> Tensor:
    """``(N, H, W)`` blurred by a separable ``size x size`` Gaussian (weights
    ``exp(-t^2 / 2 sigma^2)``, summing to 1), the border mirrored as OpenCV's ``GaussianBlur``."""
    r = size // 2
    t = torch.arange(size, dtype=maps.dtype, device=maps.device) - r
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    h, w = maps.shape[-2:]
    x = maps[:, None].index_select(-1, _reflected(w, r, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = x.index_select(-2, _reflected(h, r, maps.device))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))[:, 0]


def _crops(
    x: Tensor, scale: tuple[int, int], corners: list[tuple[int, int]], window: int
) -> Tensor:
    """``(n, C, window, window)`` crops of the image ``x`` ``(1, C, H, W)`` resized to ``scale``."""
    scaled = x
    if tuple(x.shape[-2:]) != scale:  # every scale enlarges the image: no antialiasing to do
        scaled = F.interpolate(x, size=scale, mode="bilinear", align_corners=False)
    return torch.cat([scaled[..., y : y + window, c : c + window] for y, c in corners])


def _paste(
    maps: Tensor, scale: tuple[int, int], corners: list[tuple[int, int]], size: tuple[int, int]
) -> Tensor:
    """Each ``(n, window, window)`` crop map placed at its corner of a zero ``scale`` canvas,
    resized to ``size``: ``(n, H, W)``."""
    n, window = maps.shape[0], maps.shape[-1]
    canvas = maps.new_zeros(n, 1, *scale)
    for i, (y, c) in enumerate(corners):
        canvas[i, 0, y : y + window, c : c + window] = maps[i]
    if scale == size:
        return canvas[:, 0]
    return F.interpolate(canvas, size=size, mode="bilinear", align_corners=False)[:, 0]


def _probabilities(p: Tensor | None) -> Tensor:
    if p is None:  # only callable targets have none, and class_targets refused those
        raise UsageError("sess scores its crops by class probability; the base gave none")
    return p.float().clamp(min=0)


def _base_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in _OWN_OPTIONS}


@register_method(
    "sess",
    needs_gradients=False,
    uses_gradients=True,
    paper="Tyagi et al., ECCV 2022",
    family="wrapper (scales and windows)",
    summary="a base method (Grad-CAM) on crops at 12 scales, weighted by their scores and fused",
    passes=_passes,
    passes_text="K x P x (2 + base's), P crops (122 for 224 x 224 and 12 scales)",
)
def sess(ctx: LayerContext) -> Tensor:
    """A base method on sliding windows over several scales, pasted back and fused."""
    explain = ctx.require_explain("sess")
    opts = ctx.method_options
    base = base_method(opts, DEFAULT_BASE, "sess").name
    num_scales = positive_int(opts, "num_scales", 12) or 12
    batch = positive_int(opts, "batch_size", 32) or 32
    ids = class_targets(ctx.class_ids, "sess")
    x = ctx.input.detach()
    size = (x.shape[-2], x.shape[-1])
    window = min(size)
    base_opts = _base_options(opts)
    steps = plan(size, num_scales)
    out = torch.zeros(*ids.shape, *size, device=x.device)
    for img in range(ids.shape[0]):
        for j, cls in enumerate(ids[img].tolist()):
            maps, scores = [], []
            for scale, corners in steps:
                pieces = _crops(x[img : img + 1], scale, corners, window)
                for start in range(0, pieces.shape[0], batch):
                    part = pieces[start : start + batch]
                    res = explain(part, base, [cls] * part.shape[0], method_options=base_opts)
                    maps.append((res.maps[base], scale, corners[start : start + batch]))
                    scores.append(_probabilities(res.probabilities))
            weights = torch.cat(scores)
            best = float(weights.max())
            weights = weights / best if best > 0 else torch.ones_like(weights)
            total = torch.zeros(size, device=x.device)
            count = torch.zeros(size, device=x.device)
            used = 0
            for part_maps, scale, corners in maps:
                w = weights[used : used + part_maps.shape[0]].to(part_maps)
                used += part_maps.shape[0]
                pasted = _paste(part_maps * w[:, None, None], scale, corners, size)
                lit = pasted > 0
                total += torch.where(lit, pasted, 0.0).sum(0)
                count += lit.sum(0)
            fused = torch.where(count > 0, total / count.clamp(min=1), 0.0)
            out[img, j] = gaussian_blur(fused[None])[0]
    return out
