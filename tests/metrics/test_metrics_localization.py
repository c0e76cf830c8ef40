"""Localization metrics against values worked out by hand on tiny maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from camscope.errors import UsageError
from camscope.metrics import localization as lm


def test_wsol_box_keeps_largest_segment_and_applies_threshold():
    m = torch.zeros(1, 8, 8)
    m[0, 2:4, 3:6] = 1.0  # 6 pixels, rows 2-3, cols 3-5
    m[0, 6, 0] = 0.9  # isolated single pixel, above threshold
    m[0, 4, 6] = 0.2  # diagonal neighbour of (3, 5): joins the big segment (20% >= 15%)
    m[0, 0, 0] = 0.1  # below 15% of the max: ignored
    box = lm.wsol_boxes(m)
    assert box.tolist() == [[3.0, 2.0, 7.0, 5.0]]
    # Without the largest-segment rule the isolated pixel (row 6, col 0) widens the box.
    assert lm.wsol_boxes(m, largest_only=False).tolist() == [[0.0, 2.0, 7.0, 7.0]]
    # At threshold 0.5 the faint diagonal pixel drops out.
    assert lm.wsol_boxes(m, threshold=0.5).tolist() == [[3.0, 2.0, 6.0, 4.0]]


def test_empty_map_gives_empty_box_and_zero_iou():
    box = lm.wsol_boxes(torch.zeros(1, 5, 5))
    assert box.tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert float(lm.box_iou(box[0], torch.tensor([0.0, 0.0, 2.0, 2.0]))) == 0.0


def _flood_fill(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labels by breadth-first search: the independent reference."""
    labels = np.zeros(mask.shape, dtype=np.int64)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        queue = [start]
        while queue:
            y, x = queue.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    n = (y + dy, x + dx)
                    inside = 0 <= n[0] < mask.shape[0] and 0 <= n[1] < mask.shape[1]
                    if inside and mask[n] and not labels[n]:
                        labels[n] = count
                        queue.append(n)
    return labels, count


def test_connected_components_match_a_flood_fill_on_random_masks():
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 24, 31, generator=gen) > 0.55
    labels = lm.connected_components(masks)
    for i in range(3):
        ref, count = _flood_fill(masks[i].numpy())
        ours = labels[i].numpy()
        assert len(np.unique(ours[ours > 0])) == count
        # Same partition: each reference component has exactly one of our labels and vice versa.
        for k in range(1, count + 1):
            assert len(np.unique(ours[ref == k])) == 1
        assert ((ours > 0) == (ref > 0)).all()


def test_largest_component_by_hand_including_a_spiral_and_a_tie():
    spiral = np.array(
        [
            [1, 1, 1, 1, 1],
            [0, 0, 0, 0, 1],
            [1, 1, 1, 0, 1],
            [1, 0, 0, 0, 1],
            [1, 1, 1, 1, 1],
        ],
        dtype=bool,
    )  # one component of 17 pixels
    tie = np.zeros((5, 5), dtype=bool)
    tie[0, 0:2] = True  # two components of 2 pixels: the first in raster order is kept
    tie[4, 3:5] = True
    masks = torch.from_numpy(np.stack([spiral, tie, np.zeros((5, 5), dtype=bool)]))
    labels = lm.connected_components(masks)
    assert labels[0].max() == 1 and int((labels[0] == 1).sum()) == 17
    assert labels[1, 0, 0] == 1 and labels[1, 4, 4] == 2  # numbered in raster order
    kept = lm.largest_component(masks)
    assert torch.equal(kept[0], masks[0])
    assert kept[1].nonzero().tolist() == [[0, 0], [0, 1]]
    assert not kept[2].any()  # an empty mask stays empty
    with pytest.raises(UsageError, match="mask must be"):
        lm.connected_components(masks[0])


def test_iou_known_values():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert float(lm.box_iou(a, torch.tensor([1.0, 0.0, 3.0, 2.0]))) == pytest.approx(2 / 6)
    assert float(lm.box_iou(a, a)) == 1.0
    assert float(lm.box_iou(a, torch.tensor([2.0, 2.0, 4.0, 4.0]))) == 0.0  # touching corners
    # 10x10 box vs 10x5 half: 50 / 100
    assert float(lm.box_iou(torch.tensor([0.0, 0, 10, 10]), torch.tensor([0.0, 0, 10, 5]))) == 0.5


def test_localization_correct_needs_class_and_iou():
    gt_boxes = torch.tensor([[[0.0, 0, 10, 10]]])
    gt_classes = torch.tensor([[[281, 285]]])  # two acceptable classes
    valid = torch.tensor([[True]])
    boxes = torch.tensor([[[0.0, 0, 10, 5], [0.0, 0, 10, 4], [0.0, 0, 10, 10]]])
    # guess 1: right class, IoU exactly 0.5 -> correct at top-1
    ok = lm.localization_correct(boxes, torch.tensor([[285, 1, 2]]), gt_boxes, gt_classes, valid)
    assert ok.tolist() == [[True, True, True]]
    # guess 1 wrong class, guess 2 IoU 0.4 (right class), guess 3 perfect box of the right class
    ok = lm.localization_correct(boxes, torch.tensor([[1, 281, 281]]), gt_boxes, gt_classes, valid)
    assert ok.tolist() == [[False, False, True]]
    # padding (-1) never matches a -1 class
    ok = lm.localization_correct(boxes, torch.tensor([[-1, -1, -1]]), gt_boxes, gt_classes, valid)
    assert not ok.any()


def _peak_map(row: int, col: int, size: int = 64) -> torch.Tensor:
    m = torch.zeros(1, size, size)
    m[0, row, col] = 1.0
    return m


def test_pointing_hit_and_miss_at_tolerance_edge():
    boxes = torch.tensor([[[10.0, 10.0, 20.0, 21.0]]])  # pixels cols 10..19, rows 10..20
    valid = torch.tensor([[True]])
    assert lm.pointing_hits(_peak_map(15, 34), boxes, valid).item()  # 15 px right of col 19
    assert not lm.pointing_hits(_peak_map(15, 35), boxes, valid).item()  # 16 px
    assert lm.pointing_hits(_peak_map(15, 0), boxes, valid, tolerance=10).item()  # 10 px left
    assert lm.pointing_hits(_peak_map(30, 29), boxes, valid).item()  # dy=10, dx=10: 14.1 px
    assert not lm.pointing_hits(_peak_map(32, 31), boxes, valid).item()  # dy=12, dx=12: 17 px
    assert lm.pointing_hits(_peak_map(12, 12), boxes, valid, tolerance=0).item()
    assert not lm.pointing_hits(_peak_map(12, 12), boxes, torch.tensor([[False]])).item()


def test_top5_pointing_with_reject_option():
    size = 32
    maps = torch.zeros(1, 3, size, size)
    maps[0, 0, 5, 5] = 1  # class 7 (present): peak inside its box
    maps[0, 1, 30, 30] = 1  # class 8 (absent): low raw peak -> rejected -> correct
    maps[0, 2, 30, 30] = 1  # class 9 (absent): high raw peak -> not rejected -> wrong
    peaks = torch.tensor([[4.0, 1.0, 3.0]])  # relative: 1, 0.25, 0.75
    gt_boxes = torch.tensor([[[0.0, 0, 10, 10]]])
    ok = lm.pointing_top5_reject(
        maps,
        peaks,
        torch.tensor([[7, 8, 9]]),
        gt_boxes,
        torch.tensor([[[7]]]),
        torch.tensor([[True]]),
    )
    assert ok.tolist() == [[True, True, False]]


def test_energy_pointing_share():
    m = torch.ones(1, 4, 4)
    boxes = torch.tensor([[[0.0, 0, 2, 2], [1.0, 1, 3, 3]]])  # union covers 7 of 16 pixels
    assert float(lm.energy_pointing(m, boxes, torch.tensor([[True, True]]))) == pytest.approx(
        7 / 16
    )
    assert float(lm.energy_pointing(m, boxes, torch.tensor([[True, False]]))) == pytest.approx(
        4 / 16
    )
    m2 = torch.zeros(1, 4, 4)
    m2[0, 0, 0], m2[0, 3, 3] = 3.0, 1.0
    assert float(lm.energy_pointing(m2, boxes[:, :1], torch.tensor([[True]]))) == pytest.approx(
        0.75
    )


def test_discrimination_pointing_and_energy():
    m = torch.zeros(1, 10, 10)
    m[0, 1, 1] = 1.0
    m[0, 8, 8] = 0.25
    a = torch.tensor([[[0.0, 0, 4, 4]]])
    b = torch.tensor([[[6.0, 6, 10, 10]]])
    v = torch.tensor([[True]])
    hit, share = lm.discrimination(m, a, v, b, v)
    assert hit.tolist() == [True] and float(share) == pytest.approx(0.8)
    hit, share = lm.discrimination(m, b, v, a, v)
    assert hit.tolist() == [False] and float(share) == pytest.approx(0.2)


def test_bad_maps_and_threshold_are_usage_errors():
    with pytest.raises(UsageError, match="batch, height, width"):
        lm.wsol_boxes(torch.zeros(4, 4))
    with pytest.raises(UsageError, match="threshold"):
        lm.wsol_boxes(torch.zeros(1, 4, 4), threshold=1.5)


def test_box_pixel_distance_is_euclidean():
    d = lm.box_pixel_distance(torch.tensor([[0, 0]]), torch.tensor([[[3.0, 4.0, 5.0, 6.0]]]))
    assert float(d) == pytest.approx(math.hypot(3, 4))
