"""Occlusion passes (Zeiler & Fergus 2014): the drop of a score when a square of the input is covered.

One implementation serves both users: the ``occlusion`` method
(:mod:`camscope.methods.occlusion`, maps at pixel resolution) and the evaluation's rank
correlation with occlusion (:func:`camscope.metrics.faithfulness.occlusion_map`, drops on the
patch grid). A ``patch`` x ``patch`` square filled with ``baseline`` slides over the input with
``stride``; the last square of a row or column touches the border, so every pixel is covered
whenever ``stride <= patch``. The occluded copies are built chunk by chunk (never all at once)
and scored by a ``score_fn`` the caller supplies, ``batch_size`` inputs per call.

Example:
    >>> rows, cols = occlusion_grid((224, 224), patch=56, stride=28)
    >>> len(rows), rows[-1]
    (7, 168)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import UsageError

#: ``score_fn(inputs (n, C, H, W), class_ids (n, K)) -> (n, K)`` scores of the given classes.
ScoreFn = Callable[[Tensor, Tensor], Tensor]
#: ``progress(n)`` is called after every scored chunk with the number of inputs in it.
StepFn = Callable[[int], None]


def occlusion_grid(size: tuple[int, int], patch: int, stride: int) -> tuple[list[int], list[int]]:
    """Top-left corners (rows, cols) of the occluding patches; the last one touches the border."""
    if patch < 1 or stride < 1:
        raise UsageError(f"occlusion patch and stride must be >= 1 px; got {patch} and {stride}")

    def starts(n: int) -> list[int]:
        if patch > n:
            raise UsageError(f"occlusion patch {patch} px is larger than the {n} px input")
        out = list(range(0, n - patch + 1, stride))
        if out[-1] != n - patch:
            out.append(n - patch)
        return out

    return starts(size[0]), starts(size[1])


def default_patch(size: tuple[int, int]) -> tuple[int, int]:
    """``(patch, stride)`` when none is given: a seventh of the shorter side (32 px at 224 px,
    so that seven patches side by side would tile it, as in the evaluation's occlusion grid) and
    half of that as stride, which slides the patch over 13 x 13 = 169 positions at 224 px."""
    patch = max(1, math.ceil(min(size) / 7))
    return patch, max(1, math.ceil(patch / 2))


def _fill(inputs: Tensor, cells: list[tuple[int, int]], patch: int, baseline: Tensor) -> None:
    for n, (r, c) in enumerate(cells):
        inputs[n, :, r : r + patch, c : c + patch] = baseline[n, :, r : r + patch, c : c + patch]


@torch.no_grad()
def occlusion_drops(
    score_fn: ScoreFn,
    x: Tensor,
    class_ids: Tensor,
    patch: int,
    stride: int,
    baseline: Tensor | float = 0.0,
    batch_size: int = 64,
    full: Tensor | None = None,
    progress: StepFn | None = None,
) -> Tensor:
    """Drop of each class score when each patch is occluded: ``(B, K, rows, cols)``.

    ``drop[b, k, i, j] = s_k(x_b) - s_k(x_b with patch (i, j) set to the baseline)``, where
    ``s_k`` is ``score_fn``'s score of ``class_ids[b, k]``. Cost: ``B * rows * cols`` inputs
    (plus ``B`` for the unoccluded scores unless ``full`` ``(B, K)`` is given).

    Args:
        score_fn: scores a batch of inputs for the given classes (see :data:`ScoreFn`).
        x: ``(B, C, H, W)`` model inputs; class_ids: ``(B, K)`` classes.
        patch / stride: square side and step in pixels.
        baseline: what covers the patch, a number or a tensor broadcastable to ``x`` (model-input
            values: ``0`` is the normalisation mean colour).
        batch_size: occluded inputs per ``score_fn`` call.
        full: the scores of the unoccluded inputs, when the caller has them.
        progress: called with the number of inputs after every chunk.
    """
    if class_ids.ndim != 2 or class_ids.shape[0] != x.shape[0]:
        raise UsageError(f"class_ids must be (batch, K); got {tuple(class_ids.shape)}")
    b, k = class_ids.shape
    rows, cols = occlusion_grid((x.shape[-2], x.shape[-1]), patch, stride)
    cells = [(r, c) for r in rows for c in cols]
    fill = (torch.zeros_like(x) + baseline).expand_as(x)
    if full is None:
        full = score_fn(x, class_ids)
    pairs = [(i, j) for i in range(b) for j in range(len(cells))]  # image-major
    occluded = torch.empty(len(pairs), k, device=x.device)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        idx = torch.tensor([i for i, _ in chunk], device=x.device)
        inputs = x[idx].clone()
        _fill(inputs, [cells[j] for _, j in chunk], patch, fill[idx])
        occluded[start : start + len(chunk)] = score_fn(inputs, class_ids[idx.to(class_ids.device)])
        if progress is not None:
            progress(len(chunk))
    drops = full.to(occluded)[:, None, :] - occluded.reshape(b, len(cells), k)
    return drops.transpose(1, 2).reshape(b, k, len(rows), len(cols))


def spread_to_pixels(drops: Tensor, size: tuple[int, int], patch: int, stride: int) -> Tensor:
    """Per-pixel occlusion map: the mean drop of the patches that cover each pixel.

    ``drops`` ``(..., rows, cols)`` from :func:`occlusion_drops` -> ``(..., H, W)``; a pixel no
    patch covers (only possible with ``stride > patch``) gets 0. This is Captum's
    ``Occlusion`` attribution when the grid has no extra border patch.
    """
    rows, cols = occlusion_grid(size, patch, stride)
    lead = drops.shape[:-2]
    total = drops.new_zeros(*lead, *size)
    count = drops.new_zeros(size)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            total[..., r : r + patch, c : c + patch] += drops[..., i, j, None, None]
            count[r : r + patch, c : c + patch] += 1
    return total / count.clamp(min=1)


__all__ = ["ScoreFn", "default_patch", "occlusion_drops", "occlusion_grid", "spread_to_pixels"]
