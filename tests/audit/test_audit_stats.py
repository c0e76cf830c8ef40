"""Object energy, hot spot and flags on maps whose answers can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from camscope.audit.hotspot import (
    describe_place,
    find_hotspot,
    hits_in_box,
    object_energy,
    peak_fractions,
)
from camscope.audit.stats import (
    AuditThresholds,
    image_stats,
    most_affected,
    summarise_class,
)
from camscope.errors import UsageError
from camscope.metrics.localization import box_masks, energy_pointing


def test_object_energy_by_hand() -> None:
    # x[i, j] = 4 i + j sums to 120; the top-left 2x2 box holds 0 + 1 + 4 + 5 = 10.
    maps = torch.arange(16.0).reshape(1, 4, 4)
    region = torch.zeros(1, 4, 4, dtype=torch.bool)
    region[0, :2, :2] = True
    assert object_energy(maps, region).item() == pytest.approx(10 / 120)
    # a map with no energy has no share
    assert math.isnan(object_energy(torch.zeros(1, 4, 4), region).item())


def test_object_energy_agrees_with_the_energy_pointing_metric() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 16, 12, generator=gen)
    boxes = torch.tensor([[[1.0, 2.0, 7.0, 9.0], [8.0, 0.0, 12.0, 5.0]]]).repeat(5, 1, 1)
    valid = torch.tensor([[True, True], [True, False], [False, True], [True, True], [True, False]])
    expected = energy_pointing(maps, boxes, valid)
    got = object_energy(maps, box_masks(boxes, valid, (16, 12)))
    torch.testing.assert_close(got, expected)


def test_hotspot_by_hand() -> None:
    # 4 x 4 mean map: 0.4 at (row 0, col 0), 0.2 at (0, 1), 0.1 at (3, 3), the remaining 0.3
    # spread evenly over the other 13 pixels (0.023 each).
    m = torch.full((4, 4), 0.3 / 13, dtype=torch.float64)
    m[0, 0], m[0, 1], m[3, 3] = 0.4, 0.2, 0.1
    spot = find_hotspot(m, share=0.5)  # 0.4 + 0.2 >= 0.5: two pixels, one row, two columns
    assert spot.pixels == 2
    assert spot.box == (0.0, 0.0, 0.5, 0.25)
    assert spot.area == pytest.approx(0.125)
    assert spot.energy == pytest.approx(0.6)
    # 0.7 needs the third pixel (0.1 at the far corner): the box becomes the whole image
    wide = find_hotspot(m, share=0.7)
    assert wide.pixels == 3 and wide.box == (0.0, 0.0, 1.0, 1.0) and wide.area == 1.0
    # exactly reaching the share is enough (0.4 = 0.4, no rounding slack needed)
    assert find_hotspot(m, share=0.4).pixels == 1


def test_hotspot_matches_an_independent_numpy_sort() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = rng.random((9, 7)) ** 4
        share = float(rng.uniform(0.1, 0.95))
        flat = m.ravel()
        order = np.argsort(-flat, kind="stable")
        count = int(np.searchsorted(np.cumsum(flat[order]), share * flat.sum())) + 1
        rows, cols = np.unravel_index(order[:count], m.shape)
        expected = (cols.min() / 7, rows.min() / 9, (cols.max() + 1) / 7, (rows.max() + 1) / 9)
        spot = find_hotspot(torch.from_numpy(m), share)
        assert spot.pixels == count
        assert spot.box == pytest.approx(expected)


def test_peaks_and_hits() -> None:
    maps = torch.zeros(3, 4, 8)
    maps[0, 0, 0] = 1.0  # centre (0.5 / 8, 0.5 / 4)
    maps[1, 3, 7] = 1.0
    maps[2, 1, 2] = maps[2, 2, 5] = 1.0  # tie: the first in raster order wins
    peaks = peak_fractions(maps)
    torch.testing.assert_close(
        peaks,
        torch.tensor([[0.0625, 0.125], [0.9375, 0.875], [0.3125, 0.375]], dtype=torch.float64),
    )
    assert hits_in_box(peaks, (0.0, 0.0, 0.3125, 0.375)).tolist() == [True, False, True]
    assert describe_place((0.8, 0.0, 1.0, 0.2)) == "top-right"
    assert describe_place((0.0, 0.4, 0.2, 0.6)) == "left"


def _objects(n: int, side: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """Random 8 x 8 object boxes anywhere in a ``side`` image."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, y = (int(v) for v in rng.integers(0, side - 8, size=2))
        out.append((x, y, x + 8, y + 8))
    return out


def _bump(side: int, cx: float, cy: float, sigma: float = 2.0) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(side) + 0.5, torch.arange(side) + 0.5, indexing="ij")
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))


def _regions(boxes: list[tuple[int, int, int, int]], side: int) -> torch.Tensor:
    out = torch.zeros(len(boxes), side, side, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        out[i, y0:y1, x0:x1] = True
    return out


def test_a_map_that_always_peaks_in_one_corner_is_flagged() -> None:
    side, boxes = 32, _objects(20, 32)
    maps = torch.stack([_bump(side, 3.0, 3.0) for _ in boxes])  # wherever the object is
    stats = image_stats(maps, _regions(boxes, side), grid=32)
    summary = summarise_class("cat", stats, [True] * 20, AuditThresholds())
    assert summary.hotspot is not None
    x0, y0, x1, y1 = summary.hotspot.box
    assert x0 < 0.1 and y0 < 0.1 and x1 <= 0.25 and y1 <= 0.25
    assert summary.hotspot_hits == 1.0
    assert any(f.startswith("the maps peak in the top-left") for f in summary.flags)
    assert "in 100% of the images" in summary.flags[-1]
    assert summary.object_energy is not None and summary.object_energy < 0.5
    assert any("outside the object boxes" in f for f in summary.flags)


def test_a_map_that_follows_the_object_is_not_flagged() -> None:
    side, boxes = 32, _objects(20, 32)
    maps = torch.stack([_bump(side, (x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in boxes])
    stats = image_stats(maps, _regions(boxes, side), grid=32)
    summary = summarise_class("cat", stats, [True] * 20, AuditThresholds())
    assert summary.flags == []
    assert summary.object_energy is not None and summary.object_energy > 0.8
    assert summary.hotspot is not None and summary.hotspot.area > 0.25


def test_a_coarse_map_on_a_small_object_is_not_flagged_if_it_is_concentrated_there() -> None:
    # 16 x 16 image, object 4 x 4 at (6, 6): coverage 1/16. The map spreads over 8 x 8 around it:
    # inside 16 of 64 equal pixels = 25% (75% outside), which is 4 times an even spread.
    maps = torch.zeros(6, 16, 16)
    maps[:, 4:12, 4:12] = 1.0
    region = torch.zeros(6, 16, 16, dtype=torch.bool)
    region[:, 6:10, 6:10] = True
    stats = image_stats(maps, region, grid=16)
    few = AuditThresholds(min_images=10)  # every map is the same: no hot-spot verdict here
    summary = summarise_class("x", stats, [True] * 6, few)
    assert summary.object_energy == pytest.approx(0.25) and summary.coverage == 1 / 16
    assert summary.flags == []
    strict = summarise_class(
        "x", stats, [True] * 6, AuditThresholds(min_images=10, min_object_lift=5.0)
    )
    assert strict.flags == [
        "75% of the map energy lies outside the object boxes, which cover 6% of the image "
        "(4.0 times an even spread)"
    ]


def test_without_boxes_only_the_hot_spot_speaks() -> None:
    maps = torch.stack([_bump(16, 14.0, 2.0, 1.0) for _ in range(6)])
    stats = image_stats(maps, None, grid=16)
    summary = summarise_class("x", stats, [True, False] * 3, AuditThresholds())
    assert summary.object_energy is None and summary.accuracy == 0.5
    assert summary.flags and summary.flags[0].startswith("the maps peak in the top-right")
    # too few images for a hot-spot verdict
    few = summarise_class("x", stats[:4], [True] * 4, AuditThresholds())
    assert few.flags == []


def test_empty_maps_count_in_accuracy_but_not_in_energy() -> None:
    maps = torch.zeros(3, 8, 8)
    maps[0, 2, 2] = 1.0
    region = torch.zeros(3, 8, 8, dtype=torch.bool)
    region[:, :4, :4] = True
    stats = image_stats(maps, region, grid=8)
    summary = summarise_class("x", stats, [True, True, False], AuditThresholds(min_images=1))
    assert summary.n == 3 and summary.hotspot_images == 1
    assert summary.accuracy == pytest.approx(2 / 3)
    assert summary.object_energy == 1.0 and summary.hotspot_hits == 1.0
    empty = summarise_class("y", stats[1:], [True, True], AuditThresholds())
    assert empty.hotspot is None and empty.object_energy is None and empty.flags == []


def test_most_affected_ranks_the_lowest_object_energy_first() -> None:
    maps = torch.stack([_bump(16, 4.0, 4.0), _bump(16, 12.0, 12.0), _bump(16, 4.0, 12.0)])
    region = torch.zeros(3, 16, 16, dtype=torch.bool)
    region[:, :8, :8] = True  # the first map is on its object, the second farthest off
    stats = image_stats(maps, region)
    summary = summarise_class("x", stats, [True] * 3, AuditThresholds())
    assert most_affected(summary, stats, 2) == [1, 2]
    assert most_affected(summary, stats, 0) == []


def test_mean_map_weighs_every_image_equally() -> None:
    maps = torch.zeros(2, 2, 2)
    maps[0, 0, 0] = 100.0  # a strong map does not outweigh a weak one
    maps[1, 1, 1] = 0.01
    summary = summarise_class("x", image_stats(maps, None, grid=2), [True] * 2, AuditThresholds())
    assert summary.mean_map is not None
    torch.testing.assert_close(summary.mean_map, torch.tensor([[0.5, 0.0], [0.0, 0.5]]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hotspot_energy": 0.0},
        {"max_hotspot_area": 1.5},
        {"min_hotspot_hits": -0.1},
        {"min_images": 0},
        {"max_outside_energy": 2.0},
        {"min_object_lift": float("nan")},
    ],
)
def test_bad_thresholds_are_usage_errors(kwargs) -> None:
    with pytest.raises(UsageError):
        AuditThresholds(**kwargs).validate()


def test_bad_maps_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="non-negative"):
        object_energy(-torch.ones(1, 2, 2), torch.ones(1, 2, 2, dtype=torch.bool))
    with pytest.raises(UsageError, match=r"\(N, H, W\)"):
        peak_fractions(torch.ones(2, 2))
    with pytest.raises(UsageError, match="zero"):
        find_hotspot(torch.zeros(3, 3))
    with pytest.raises(UsageError, match="share"):
        find_hotspot(torch.ones(3, 3), share=1.5)
