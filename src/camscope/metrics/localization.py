"""Localization metrics: WSOL boxes, IoU, localization error, pointing games, energy share.

Conventions used by every function here (and by :mod:`camscope.data.annotations`):

* maps are ``(B, H, W)`` float tensors, higher = more relevant (any scale; most functions
  normalise nothing themselves);
* boxes are ``(x0, y0, x1, y1)`` in continuous pixel-edge coordinates: pixel column ``j`` covers
  ``[j, j + 1)``, so a box around columns 3..5 is ``x0=3, x1=6`` and its width is ``x1 - x0``;
* a pixel belongs to a box when its centre ``(j + 0.5, i + 0.5)`` lies inside the box;
* several ground-truth boxes per image are padded to ``(B, M, 4)`` with a boolean ``valid``
  mask ``(B, M)``; ground-truth classes are ``(B, M, S)`` integer tensors padded with ``-1``
  (``S`` > 1 when several model classes are acceptable for one object, e.g. tabby / tiger cat /
  Egyptian cat for a cat).

Everything is pure torch, batched and runs on the maps' device, except the connected components
of :func:`wsol_boxes` (:func:`scipy.ndimage.label` on the CPU: about 35x faster than the
batched torch labelling it replaced, see docs/architecture.md).

Example:
    >>> maps = torch.zeros(1, 8, 8); maps[0, 2:4, 3:6] = 1.0
    >>> wsol_boxes(maps)
    tensor([[3., 2., 6., 4.]])
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import UsageError

#: Grad-CAM paper (Selvaraju et al. 2017, Sec. 4.1): threshold at 15% of the map's maximum.
DEFAULT_THRESHOLD = 0.15
#: TorchRay's pointing-game benchmark (Fong, Patrick & Vedaldi 2019): 15 pixels of tolerance.
DEFAULT_TOLERANCE = 15
#: ILSVRC / Grad-CAM localization criterion.
IOU_CORRECT = 0.5


def _check_maps(maps: Tensor) -> None:
    if not isinstance(maps, Tensor) or maps.ndim != 3:
        raise UsageError(
            f"maps must be a (batch, height, width) tensor; got shape {tuple(getattr(maps, 'shape', ()))}"
        )


def connected_components(mask: Tensor) -> Tensor:
    """Label the 8-connected components of a batch of boolean masks ``(B, H, W)``
    (:func:`scipy.ndimage.label` with a 3 x 3 structure, on the CPU; the labels come back on the
    mask's device). Each mask's components are numbered 1, 2, ... in the raster order of their
    first pixel; background is 0.

    Example:
        >>> m = torch.tensor([[[1, 0, 1], [0, 1, 0], [0, 0, 0]]], dtype=torch.bool)
        >>> connected_components(m)  # diagonal neighbours are connected
        tensor([[[1, 0, 1],
                 [0, 1, 0],
                 [0, 0, 0]]])
    """
    from scipy import ndimage

    if mask.ndim != 3:
        raise UsageError(f"mask must be (batch, height, width); got {tuple(mask.shape)}")
    masks = mask.detach().bool().cpu().numpy()
    labels = np.zeros(masks.shape, dtype=np.int64)
    eight = np.ones((3, 3), dtype=bool)
    for i, m in enumerate(masks):
        ndimage.label(m, structure=eight, output=labels[i])
    return torch.from_numpy(labels).to(mask.device)


def largest_component(mask: Tensor) -> Tensor:
    """Keep only the largest 8-connected component of each mask ``(B, H, W)``.

    Ties between equally large components go to the one that starts first in raster order. An
    empty mask stays empty.
    """
    labels = connected_components(mask).cpu().numpy()
    keep = np.zeros(labels.shape, dtype=bool)
    for i, lab in enumerate(labels):
        counts = np.bincount(lab.ravel())
        if len(counts) > 1:
            keep[i] = lab == 1 + int(counts[1:].argmax())
    return torch.from_numpy(keep).to(mask.device)


def threshold_mask(maps: Tensor, threshold: float = DEFAULT_THRESHOLD) -> Tensor:
    """Pixels with ``map >= threshold * max(map)`` (per image); all-zero maps give empty masks."""
    _check_maps(maps)
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"threshold must be a fraction of the maximum in [0, 1]; got {threshold}")
    peak = maps.flatten(1).amax(1)[:, None, None]
    return (maps >= threshold * peak) & (peak > 0)


def mask_boxes(mask: Tensor) -> Tensor:
    """Tight boxes ``(B, 4)`` around boolean masks ``(B, H, W)``; empty masks give ``(0,0,0,0)``."""
    _b, h, w = mask.shape
    rows = mask.any(dim=2)
    cols = mask.any(dim=1)
    ys = torch.arange(h, device=mask.device)
    xs = torch.arange(w, device=mask.device)
    big = max(h, w) + 1
    y0 = torch.where(rows, ys, big).amin(1)
    y1 = torch.where(rows, ys, -1).amax(1) + 1
    x0 = torch.where(cols, xs, big).amin(1)
    x1 = torch.where(cols, xs, -1).amax(1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    empty = ~rows.any(1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def wsol_boxes(
    maps: Tensor, threshold: float = DEFAULT_THRESHOLD, largest_only: bool = True
) -> Tensor:
    """Weakly-supervised localization box of each map (Grad-CAM paper, Sec. 4.1).

    The map is binarised at ``threshold`` times its maximum (15% in the paper), and the box is
    drawn around the largest 8-connected segment (``largest_only=False``: around every segment).

    Args:
        maps: ``(B, H, W)`` maps, higher = more relevant.
        threshold: fraction of each map's maximum.
        largest_only: keep only the largest connected segment.

    Returns:
        ``(B, 4)`` float boxes ``(x0, y0, x1, y1)`` in pixel-edge coordinates.
    """
    mask = threshold_mask(maps, threshold)
    if largest_only:
        mask = largest_component(mask)
    return mask_boxes(mask)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of boxes ``(..., 4)`` and ``(..., 4)`` (broadcast).

    Example:
        >>> box_iou(torch.tensor([0., 0., 2., 2.]), torch.tensor([1., 0., 3., 2.]))
        tensor(0.3333)
    """
    ix = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    iy = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = ix * iy
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def class_match(classes: Tensor, gt_classes: Tensor) -> Tensor:
    """Whether each predicted class ``(B, K)`` is acceptable for each object ``(B, M, S)``.

    Returns ``(B, K, M)`` booleans.
    """
    same = classes[:, :, None, None] == gt_classes[:, None]
    return (same & (gt_classes[:, None] >= 0)).any(-1)


def localization_correct(
    boxes: Tensor,
    classes: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
    valid: Tensor,
    iou_threshold: float = IOU_CORRECT,
) -> Tensor:
    """Top-k localization success as in ILSVRC and the Grad-CAM paper (Table 1).

    A guess ``j`` (a class and the box drawn from its map) is correct when the class is one of an
    object's classes and the box overlaps that object's box with IoU >= 0.5. Top-k success is
    "any of the first k guesses is correct"; the top-k localization *error* is ``1 - mean``.

    Args:
        boxes: ``(B, K, 4)`` one box per guessed class, in rank order.
        classes: ``(B, K)`` guessed classes (the model's top-K predictions).
        gt_boxes: ``(B, M, 4)``; gt_classes: ``(B, M, S)`` (``-1`` padded); valid: ``(B, M)``.

    Returns:
        ``(B, K)`` booleans: column ``k-1`` is top-k success.
    """
    iou = box_iou(boxes[:, :, None], gt_boxes[:, None])  # (B, K, M)
    ok = class_match(classes, gt_classes) & valid[:, None] & (iou >= iou_threshold)
    return ok.any(-1).cummax(dim=1).values


def box_masks(boxes: Tensor, valid: Tensor, size: tuple[int, int]) -> Tensor:
    """Union of each image's boxes as a boolean mask ``(B, H, W)`` (pixel centres inside)."""
    h, w = size
    cy = torch.arange(h, device=boxes.device, dtype=torch.float32) + 0.5
    cx = torch.arange(w, device=boxes.device, dtype=torch.float32) + 0.5
    b = boxes.float()
    inside_x = (cx >= b[..., 0:1]) & (cx <= b[..., 2:3])  # (B, M, W)
    inside_y = (cy >= b[..., 1:2]) & (cy <= b[..., 3:4])  # (B, M, H)
    inside = inside_y[..., :, None] & inside_x[..., None, :] & valid[..., None, None]
    return inside.any(1)


def peak_points(maps: Tensor) -> Tensor:
    """``(B, 2)`` (row, column) of each map's maximum; the first in raster order on ties."""
    _check_maps(maps)
    w = maps.shape[-1]
    idx = maps.flatten(1).argmax(1)
    return torch.stack([idx // w, idx % w], dim=1)


def box_pixel_distance(points: Tensor, boxes: Tensor) -> Tensor:
    """Euclidean distance (pixels) from each point ``(B, 2)`` (row, col) to the nearest pixel of
    each box ``(B, M, 4)``; 0 inside. Returns ``(B, M)``.

    A box's pixels are those whose centres lie inside it: columns ``ceil(x0 - 0.5)`` to
    ``floor(x1 - 0.5)``, i.e. ``x0 .. x1 - 1`` for integer boxes.
    """
    first_col = torch.ceil(boxes[..., 0] - 0.5)
    last_col = torch.floor(boxes[..., 2] - 0.5)
    first_row = torch.ceil(boxes[..., 1] - 0.5)
    last_row = torch.floor(boxes[..., 3] - 0.5)
    r = points[:, 0:1].float()
    c = points[:, 1:2].float()
    dx = torch.maximum(torch.maximum(first_col - c, c - last_col), torch.zeros_like(c))
    dy = torch.maximum(torch.maximum(first_row - r, r - last_row), torch.zeros_like(r))
    dist = torch.sqrt(dx**2 + dy**2)
    empty = (last_col < first_col) | (last_row < first_row)
    return torch.where(empty, torch.full_like(dist, float("inf")), dist)


def pointing_hits(
    maps: Tensor, gt_boxes: Tensor, valid: Tensor, tolerance: float = DEFAULT_TOLERANCE
) -> Tensor:
    """Pointing game (Zhang et al. 2016; TorchRay's benchmark protocol).

    A hit when the map's maximum lies within ``tolerance`` pixels (Euclidean, pixel to pixel) of
    a pixel of one of the ground-truth boxes of the explained class. TorchRay dilates the object
    mask by a disc of radius 15 px; for box masks that is this distance test.

    Args:
        maps: ``(B, H, W)``; gt_boxes: ``(B, M, 4)``; valid: ``(B, M)``.

    Returns:
        ``(B,)`` booleans. Accuracy is ``hits.float().mean()``.
    """
    dist = box_pixel_distance(peak_points(maps), gt_boxes)
    return ((dist <= tolerance) & valid).any(1)


def pointing_top5_reject(
    maps: Tensor,
    peaks: Tensor,
    classes: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
    valid: Tensor,
    tolerance: float = DEFAULT_TOLERANCE,
    reject_threshold: float = 0.5,
) -> Tensor:
    """Top-5 pointing game with a reject option (Grad-CAM paper, Sec. 5.1 / Table "pointing").

    Each of the model's top-K classes is scored: a present class (one of the image's objects) is
    correct when its map is not rejected and its maximum hits one of that class's boxes; an absent
    class is correct when its map is rejected. A map is rejected when its raw peak
    (before normalisation) is below ``reject_threshold`` times the largest raw peak among the
    image's K maps.

    Deviation: the paper does not publish its rejection threshold or how raw map values are made
    comparable; the relative-peak rule above is ours.

    Args:
        maps: ``(B, K, H, W)`` maps of the top-K classes; peaks: ``(B, K)`` their raw maxima;
        classes: ``(B, K)``; gt_boxes / gt_classes / valid as in :func:`localization_correct`.

    Returns:
        ``(B, K)`` booleans (accuracy: their mean).
    """
    b, k, h, w = maps.shape
    rel = peaks / peaks.amax(1, keepdim=True).clamp(min=1e-12)
    rejected = rel < reject_threshold
    match = class_match(classes, gt_classes) & valid[:, None]  # (B, K, M)
    present = match.any(-1)
    points = peak_points(maps.reshape(b * k, h, w))
    boxes = gt_boxes[:, None].expand(b, k, *gt_boxes.shape[1:]).reshape(b * k, -1, 4)
    dist = box_pixel_distance(points, boxes).reshape(b, k, -1)
    hit = ((dist <= tolerance) & match).any(-1)
    return torch.where(present, hit & ~rejected, rejected)


def energy_pointing(maps: Tensor, gt_boxes: Tensor, valid: Tensor) -> Tensor:
    """Energy-based pointing game (Score-CAM paper, Wang et al. 2020, Sec. 5.2).

    The share of the map's energy inside the ground-truth boxes:
    ``sum(map * inside) / sum(map)``, with ``inside`` the union of the boxes. Maps should be
    non-negative (camscope's are in [0, 1]); an all-zero map scores 0.

    Returns:
        ``(B,)`` shares in [0, 1].
    """
    _check_maps(maps)
    inside = box_masks(gt_boxes, valid, (maps.shape[-2], maps.shape[-1]))
    total = maps.flatten(1).sum(1)
    within = (maps * inside).flatten(1).sum(1)
    return torch.where(total > 0, within / total.clamp(min=1e-12), torch.zeros_like(total))


def discrimination(
    maps: Tensor,
    boxes_a: Tensor,
    valid_a: Tensor,
    boxes_b: Tensor,
    valid_b: Tensor,
) -> tuple[Tensor, Tensor]:
    """Class discrimination on two-object images: does the map for class A fall on A, not B?

    Returns:
        ``(pointing, energy)``: ``(B,)`` booleans, the map's maximum lies inside A's boxes and not
        inside B's (no tolerance); and ``(B,)`` shares ``E_A / (E_A + E_B)`` of the map energy in
        A's boxes relative to A's and B's (0.5 = no discrimination, 1 = perfect).
    """
    points = peak_points(maps)
    in_a = ((box_pixel_distance(points, boxes_a) == 0) & valid_a).any(1)
    in_b = ((box_pixel_distance(points, boxes_b) == 0) & valid_b).any(1)
    size = (maps.shape[-2], maps.shape[-1])
    e_a = (maps * box_masks(boxes_a, valid_a, size)).flatten(1).sum(1)
    e_b = (maps * box_masks(boxes_b, valid_b, size)).flatten(1).sum(1)
    total = e_a + e_b
    share = torch.where(total > 0, e_a / total.clamp(min=1e-12), torch.full_like(total, 0.5))
    return in_a & ~in_b, share
