"""The per-class numbers of ``camscope audit``: accuracy, object energy, hot spot and flags.

The Grad-CAM paper (Selvaraju et al. 2017, Sec. 6.3) found a biased nurse/doctor classifier by
looking at its maps: it looked at faces and hair, not at the coat or the stethoscope. The audit
turns that look into numbers per class ``C``:

* ``n``, ``accuracy``: the images labelled ``C`` and the share whose top-1 class is an accepted
  class of ``C``;
* ``object_energy``: over the images labelled ``C``, the mean share of the energy of the map of
  *the predicted class* inside the object boxes
  (:func:`camscope.audit.hotspot.object_energy`; ``None`` without boxes): does the model look
  at the object when it decides? (On a correctly classified image that is the map of ``C``; the
  map of the true class, the accepted class of ``C`` the model scores highest as in ``evaluate``,
  is measured too and reported beside it.)
* ``hotspot_box``, ``hotspot_share``, ``hotspot_hits``: over the images the model *predicts* as
  ``C``, the hot spot of the mean unit-sum map of ``C`` (found without boxes,
  :func:`camscope.audit.hotspot.find_hotspot`): the box in fractions ``[x0, y0, x1, y1]``, its
  share of the image area, and the share of those images whose own map peaks inside it. Where
  does the model look when it says ``C``? A shortcut shows here even on a test set where the
  cue and the class are independent: the model says ``C`` when it sees ``C``'s cue, and looks at
  it. On data where cue and class go together (most real data sets) the images labelled and the
  images predicted ``C`` are nearly the same;
* ``flags``: plain-language reasons (:class:`AuditThresholds` says when).

The mean map is averaged on a ``grid x grid`` copy of every map (area pooling, default 32), so a
class of any size costs ``grid**2`` numbers per image; object energies and peaks are measured on
the full-resolution maps. Maps with no energy (all zero) count in ``n`` and ``accuracy`` but not
in the energy numbers or the hot spot.

Example:
    >>> stats = image_stats(maps, regions, grid=32)  # doctest: +SKIP
    >>> summary = summarise_class("cat", stats, correct, AuditThresholds())  # doctest: +SKIP
    >>> summary.flags  # doctest: +SKIP
    ['the maps peak in the top-left 6% of the image in 100% of the images predicted as this class']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UsageError
from ..outputs import finite
from .hotspot import (
    HotSpot,
    box_region,
    find_hotspot,
    hits_in_box,
    hotspot_flag,
    object_energy,
    outside_flag,
    peak_fractions,
    unit_sum,
)


@dataclass(frozen=True)
class AuditThresholds:
    """When a class is flagged (each is a ``camscope audit`` option).

    Attributes:
        hotspot_energy: share of the mean map's energy the hot spot must hold (default 0.5).
        max_hotspot_area: flag a hot spot covering at most this share of the image (0.25) ...
        min_hotspot_hits: ... that at least this share of the images peak in (0.5);
        min_images: ... when the class has at least this many maps with energy (5).
        max_outside_energy: flag a class whose maps put more than this share of their energy
            outside the object boxes (0.5; only with boxes) ...
        min_object_lift: ... unless the energy inside is at least this many times the boxes'
            share of the image (2.0: twice what an evenly spread map would put there).
    """

    hotspot_energy: float = 0.5
    max_hotspot_area: float = 0.25
    min_hotspot_hits: float = 0.5
    min_images: int = 5
    max_outside_energy: float = 0.5
    min_object_lift: float = 2.0

    def validate(self) -> None:
        for name in ("hotspot_energy", "max_hotspot_area", "min_hotspot_hits"):
            value = getattr(self, name)
            if not (0.0 < value <= 1.0):
                raise UsageError(f"{name} must be in (0, 1]; got {value}")
        if not 0.0 <= self.max_outside_energy <= 1.0:
            raise UsageError(f"max_outside_energy must be in [0, 1]; got {self.max_outside_energy}")
        if not (math.isfinite(self.min_object_lift) and self.min_object_lift >= 0):
            raise UsageError(f"min_object_lift must be >= 0; got {self.min_object_lift}")
        if self.min_images < 1:
            raise UsageError(f"min_images must be at least 1; got {self.min_images}")


@dataclass
class ImageStats:
    """What the audit keeps of one image's map (everything on the CPU).

    Attributes:
        energy: the map's total energy (0: an empty map).
        object_energy: share inside the object region (NaN: no region or no energy).
        coverage: the object region's share of the image (NaN: no region).
        peak: ``(x, y)`` of the map's maximum in fractions (None for an empty map).
        grid_map: the map area-pooled to ``grid x grid`` and scaled to unit sum (float16).
    """

    energy: float
    object_energy: float
    coverage: float
    peak: tuple[float, float] | None
    grid_map: Tensor


def image_stats(maps: Tensor, regions: Tensor | None, grid: int = 32) -> list[ImageStats]:
    """Per-image statistics of ``(N, H, W)`` maps and ``(N, H, W)`` object regions.

    ``regions`` may be None (no boxes), and a region that is all False means the same for that
    image.
    """
    if grid < 1:
        raise UsageError(f"grid must be at least 1; got {grid}")
    n, h, w = maps.shape
    total = maps.flatten(1).sum(1)
    if regions is None:
        regions = torch.zeros_like(maps, dtype=torch.bool)
    has_region = regions.flatten(1).any(1)
    shares = object_energy(maps, regions)
    shares = torch.where(has_region, shares, torch.full_like(shares, math.nan))
    coverage = torch.where(
        has_region, regions.flatten(1).float().mean(1), torch.full_like(shares, math.nan)
    )
    peaks = peak_fractions(maps)
    size = (min(grid, h), min(grid, w))
    pooled = unit_sum(F.adaptive_avg_pool2d(maps.float()[:, None], size)[:, 0])
    pooled = pooled.to("cpu", torch.float16)
    out = []
    for i in range(n):
        energy = float(total[i])
        peak = (float(peaks[i, 0]), float(peaks[i, 1])) if energy > 0 else None
        out.append(ImageStats(energy, float(shares[i]), float(coverage[i]), peak, pooled[i]))
    return out


@dataclass
class ClassSummary:
    """The audit of one class (see the module docstring); ``None`` where a number is undefined.

    ``hotspot_images`` counts the maps (with energy) the hot spot was found on.
    """

    name: str
    n: int
    accuracy: float
    object_energy: float | None
    coverage: float | None
    hotspot: HotSpot | None
    hotspot_hits: float | None
    mean_map: Tensor | None
    hotspot_images: int
    flags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The class's entry in ``audit.json`` (exactly the documented keys, 4 decimals)."""
        spot = self.hotspot
        entry = {
            "n": self.n,
            "accuracy": self.accuracy,
            "object_energy": self.object_energy,
            "hotspot_box": list(spot.box) if spot else None,
            "hotspot_share": spot.area if spot else None,
            "hotspot_hits": self.hotspot_hits,
            "flags": list(self.flags),
        }
        return finite(entry, 4)


def nanmean(values: Sequence[float]) -> float | None:
    """The mean of the values that are not NaN (None when none is)."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def summarise_class(
    name: str,
    stats: Sequence[ImageStats],
    correct: Sequence[bool],
    thresholds: AuditThresholds,
    *,
    predicted: Sequence[ImageStats] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ClassSummary:
    """Aggregate one class into its :class:`ClassSummary` and flags.

    Args:
        stats: the map measured for the object energy on each image labelled with the class.
        correct: whether each of those images was classified correctly.
        predicted: the class's map on each image predicted as the class, for the hot spot
            (default ``stats``).
    """
    t = thresholds
    t.validate()
    if len(stats) != len(correct):
        raise UsageError(f"{len(stats)} image statistics but {len(correct)} correctness values")
    n = len(stats)
    accuracy = sum(bool(c) for c in correct) / n if n else math.nan
    energy = nanmean([s.object_energy for s in stats if s.energy > 0])
    coverage = nanmean([s.coverage for s in stats if s.energy > 0])
    flags: list[str | None] = []
    if energy is not None:
        outside = outside_flag(
            energy, coverage or 0.0, max_outside=t.max_outside_energy, min_lift=t.min_object_lift
        )
        flags.append(outside)
    live = [s for s in (stats if predicted is None else predicted) if s.energy > 0]
    spot: HotSpot | None = None
    hits: float | None = None
    mean_map: Tensor | None = None
    if live:
        mean_map = torch.stack([s.grid_map.float() for s in live]).mean(0)
        spot = find_hotspot(mean_map, t.hotspot_energy)
        peaks = torch.tensor([s.peak for s in live], dtype=torch.float64)
        hits = float(hits_in_box(peaks, spot.box).double().mean())
        which = "" if predicted is None else "predicted as this class"
        flag = hotspot_flag(
            spot,
            hits,
            len(live),
            max_area=t.max_hotspot_area,
            min_hits=t.min_hotspot_hits,
            min_images=t.min_images,
            which=which,
        )
        flags.append(flag)
    kept = [f for f in flags if f]
    return ClassSummary(
        name,
        n,
        accuracy,
        energy,
        coverage,
        spot,
        hits,
        mean_map,
        len(live),
        kept,
        dict(extra or {}),
    )


def most_affected(summary: ClassSummary, stats: Sequence[ImageStats], count: int) -> list[int]:
    """Indices (into ``stats``) of the ``count`` images that show a class's problem most.

    With boxes: the lowest object energy first. Without: the images whose own map puts the most
    energy into the class's hot spot. Empty maps come last.
    """
    if count <= 0 or not stats:
        return []

    def key(i: int) -> tuple[int, float]:
        s = stats[i]
        if s.energy <= 0:
            return (2, 0.0)
        if not math.isnan(s.object_energy):
            return (0, s.object_energy)
        if summary.hotspot is not None:  # the share of its pooled map in the class's hot spot
            region = box_region(summary.hotspot.box, tuple(s.grid_map.shape))  # type: ignore[arg-type]
            return (1, -float((s.grid_map.float() * region).sum()))
        return (1, 0.0)

    return sorted(range(len(stats)), key=key)[:count]
