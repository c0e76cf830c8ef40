"""Where a class's maps put their energy: inside the objects, or at one fixed place.

Two numbers a shortcut audit needs, both pure torch on ``(N, H, W)`` non-negative maps (the
normalised maps :func:`camscope.explain` returns):

**Object energy** (the energy-based pointing game of Score-CAM, Wang et al. 2020, per image): the
share of a map's energy inside the object region ``R`` (the union of the object boxes, or a mask),

.. math:: E_{obj} = \\frac{\\sum_{p \\in R} m_p}{\\sum_p m_p}.

A map that is zero everywhere has no energy to share: its value is NaN and it is left out of
class means.

**Hot spot** (found without any boxes). Each map is scaled to unit sum (an energy distribution,
so every image weighs the same), the class's maps are averaged into the mean map ``M``
(``sum M = 1``), and its pixels are sorted by decreasing value (ties in raster order). The
*top pixels* are the shortest prefix of that order whose values add up to at least ``share`` of
the energy (default one half): no smaller set of pixels holds that share. The hot spot is the
smallest axis-aligned box (pixel edges) that contains every top pixel, reported in fractions of
the image ``[x0, y0, x1, y1]``; its ``area`` is ``(x1 - x0) (y1 - y0)``. Then each image's own
peak (the centre of its maximal pixel, the first in raster order on ties) is tested against the
box: ``hits`` is the share of images whose peak lies inside (edges included).

Maps that follow objects scattered over the image average to a broad mean map, so half of its
energy needs a large box and few peaks fall in it. Maps that peak at the same place whatever
the object's position (a watermark, a ruler, a corner patch) average to a sharp mean map: a small
box that nearly every peak hits. A peak lands in a box covering ``a`` of the image with
probability ``a`` by chance, which is why :func:`hotspot_flag` wants both a small box and many
hits.

Deviation, said openly: two separate hot spots (a cue on the left, objects in the middle) give
one box around both, which is then large and not flagged; the box describes where the energy is,
it does not segment it.

Example:
    >>> import torch
    >>> maps = torch.zeros(3, 4, 4); maps[:, 0, 0] = 1.0  # every map peaks top-left
    >>> spot = find_hotspot(unit_sum(maps).mean(0), share=0.5)
    >>> spot.box, spot.area, hits_in_box(peak_fractions(maps), spot.box).float().mean().item()
    ((0.0, 0.0, 0.25, 0.25), 0.0625, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UsageError
from ..outputs import percent

Box = tuple[float, float, float, float]


def _check(maps: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    if maps.ndim != 3:
        raise UsageError(f"expected maps of shape (N, H, W); got {tuple(maps.shape)}")
    if maps.numel() and bool((maps < 0).any()):
        raise UsageError("maps must be non-negative (use the normalised maps of explain())")
    return maps.to(dtype)


def object_energy(maps: Tensor, regions: Tensor) -> Tensor:
    """Share of each map's energy inside its object region.

    Args:
        maps: ``(N, H, W)`` non-negative maps.
        regions: ``(N, H, W)`` booleans (box union or mask) at the maps' resolution.

    Returns:
        ``(N,)`` shares in [0, 1]; NaN for maps with no energy.
    """
    maps = _check(maps)
    if regions.shape != maps.shape:
        raise UsageError(f"regions {tuple(regions.shape)} do not match maps {tuple(maps.shape)}")
    total = maps.flatten(1).sum(1)
    inside = (maps * regions.to(maps.dtype)).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-30), torch.full_like(total, math.nan))


def unit_sum(maps: Tensor) -> Tensor:
    """Each map divided by its sum; maps with no energy stay zero."""
    maps = _check(maps)
    total = maps.flatten(1).sum(1)[:, None, None]
    return torch.where(total > 0, maps / total.clamp(min=1e-30), torch.zeros_like(maps))


@dataclass(frozen=True)
class HotSpot:
    """The hot spot of a mean map (see the module docstring).

    Attributes:
        box: ``(x0, y0, x1, y1)`` in fractions of the image width and height.
        area: the box's share of the image area.
        energy: the share of the mean map's energy inside the box (at least the requested share).
        pixels: how many top pixels it took to reach the share.
    """

    box: Box
    area: float
    energy: float
    pixels: int


def find_hotspot(mean_map: Tensor, share: float = 0.5) -> HotSpot:
    """The smallest box around the fewest pixels that hold ``share`` of ``mean_map``'s energy.

    Args:
        mean_map: ``(H, W)`` non-negative map with some energy (need not sum to 1).
        share: the energy share, in (0, 1].
    """
    if not 0.0 < share <= 1.0:
        raise UsageError(f"hot-spot share must be in (0, 1]; got {share}")
    if mean_map.ndim != 2:
        raise UsageError(f"expected one (H, W) map; got {tuple(mean_map.shape)}")
    h, w = mean_map.shape
    flat = _check(mean_map[None], torch.float64)[0].flatten()
    total = float(flat.sum())
    if total <= 0:
        raise UsageError("the mean map is zero; there is no hot spot")
    order = torch.sort(flat, descending=True, stable=True).indices
    cumulative = torch.cumsum(flat[order], 0)
    # The first prefix reaching the share (a relative 1e-12 slack absorbs summation rounding).
    count = int(torch.searchsorted(cumulative, share * total * (1 - 1e-12)).item()) + 1
    count = min(count, flat.numel())
    top = order[:count]
    rows, cols = top // w, top % w
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    inside = float(flat.reshape(h, w)[r0:r1, c0:c1].sum()) / total
    box = (c0 / w, r0 / h, c1 / w, r1 / h)
    return HotSpot(box, (box[2] - box[0]) * (box[3] - box[1]), inside, count)


def peak_fractions(maps: Tensor) -> Tensor:
    """``(N, 2)`` ``(x, y)`` of each map's maximal pixel centre in fractions of width and height
    (the first maximum in raster order on ties)."""
    maps = _check(maps)
    h, w = maps.shape[-2:]
    idx = maps.flatten(1).argmax(1)
    x = ((idx % w).double() + 0.5) / w
    y = (torch.div(idx, w, rounding_mode="floor").double() + 0.5) / h
    return torch.stack([x, y], 1)


def hits_in_box(points: Tensor, box: Box) -> Tensor:
    """``(N,)`` booleans: the ``(x, y)`` fraction points inside ``box`` (edges included)."""
    x0, y0, x1, y1 = box
    x, y = points[:, 0], points[:, 1]
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def box_region(box: Box, size: tuple[int, int]) -> Tensor:
    """``(H, W)`` booleans: the pixels whose centres lie in a fraction box."""
    h, w = size
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    x0, y0, x1, y1 = box
    return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]


def describe_place(box: Box) -> str:
    """Where a fraction box lies, from its centre in a 3 x 3 grid: ``"top-left"``, ``"top"``,
    ``"centre"``, ``"bottom-right"``...

    >>> describe_place((0.0, 0.0, 0.2, 0.2)), describe_place((0.4, 0.4, 0.6, 0.6))
    ('top-left', 'centre')
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = ("top", "", "bottom")[min(2, int(cy * 3))]
    col = ("left", "", "right")[min(2, int(cx * 3))]
    return "-".join(p for p in (row, col) if p) or "centre"


def hotspot_flag(
    spot: HotSpot,
    hits: float,
    images: int,
    *,
    max_area: float,
    min_hits: float,
    min_images: int,
    which: str = "",
) -> str | None:
    """The plain-language reason a hot spot is suspicious, or None.

    Suspicious: at least ``min_images`` maps, a box covering at most ``max_area`` of the image,
    and at least ``min_hits`` of the images peaking inside it. ``which`` ends the sentence
    (e.g. ``"predicted as this class"``).

    >>> spot = HotSpot((0.0, 0.0, 0.25, 0.3), 0.075, 0.6, 12)
    >>> hotspot_flag(spot, 0.91, 40, max_area=0.25, min_hits=0.5, min_images=5)
    'the maps peak in the top-left 8% of the image in 91% of the images'
    >>> hotspot_flag(spot, 0.91, 40, max_area=0.25, min_hits=0.5, min_images=5, which="x")
    'the maps peak in the top-left 8% of the image in 91% of the images x'
    """
    if images < min_images or spot.area > max_area or hits < min_hits:
        return None
    return (
        f"the maps peak in the {describe_place(spot.box)} {percent(spot.area, 0)} of the image "
        f"in {percent(hits, 0)} of the images{' ' + which if which else ''}"
    )


def outside_flag(
    energy: float, coverage: float, *, max_outside: float, min_lift: float = 2.0
) -> str | None:
    """The plain-language reason when the maps miss the objects, or None.

    Flagged when more than ``max_outside`` of the energy lies outside the object boxes *and* the
    energy inside is less than ``min_lift`` times the boxes' share of the image (what a map
    spread evenly would put there). The second condition keeps coarse maps on small objects
    (a 7 x 7 Grad-CAM on an object covering 5% of the image cannot put half its energy inside)
    from being flagged when they are still concentrated on the objects; for boxes covering a
    quarter of the image or more it always holds when the first does.

    >>> outside_flag(0.38, 0.3, max_outside=0.5)
    '62% of the map energy lies outside the object boxes, which cover 30% of the image (1.3 times an even spread)'
    >>> outside_flag(0.38, 0.1, max_outside=0.5) is None  # 3.8 times an even spread
    True
    """
    if math.isnan(energy) or 1.0 - energy <= max_outside:
        return None
    if coverage > 0 and energy >= min_lift * coverage:
        return None
    lift = f" ({energy / coverage:.1f} times an even spread)" if coverage > 0 else ""
    return (
        f"{percent(1.0 - energy, 0)} of the map energy lies outside the object boxes, "
        f"which cover {percent(coverage, 0)} of the image{lift}"
    )
