"""The similarity numbers of ``camscope adversarial``, worked out by hand."""

from __future__ import annotations

import pytest
import torch

from camscope.diagnosis.adversarial import _similarity, unit_image
from camscope.models import ModelSpec


def test_similarity_of_the_original_class_maps_by_hand() -> None:
    # n = 1: maps[0] = adversarial image (adversarial class, original class), maps[1] = clean.
    maps = torch.zeros(2, 2, 4, 4)
    maps[1, 0, :2, :2] = 1.0  # clean: the top-left 2 x 2 block
    maps[0, 1, :2, 1:3] = 1.0  # adversarial: moved one column to the right
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0]])  # pixel (0, 0) only
    (sim,) = _similarity(maps, 1, [box], tolerance=0.0)
    # top 15% of 16 pixels = 2: (0, 0), (0, 1) vs (0, 1), (0, 2) -> IoU 1 / 3
    assert sim["top15_iou"] == pytest.approx(1 / 3, abs=1e-4)
    # Spearman of two binary maps (tied ranks) is their phi coefficient: 4 ones each, 2 shared,
    # 10 zeros shared -> (2 * 10 - 2 * 2) / sqrt(4 * 12 * 4 * 12) = 1 / 3
    assert sim["spearman"] == pytest.approx(1 / 3, abs=1e-4)
    # peaks (first maximum in raster order): clean (0, 0) in the box, adversarial (0, 1) 1 px off
    assert sim["pointing_clean"] and not sim["pointing_adversarial"]
    assert not sim["empty_clean"] and not sim["empty_adversarial"]
    maps[0, 1] = 0.0  # the original class lost every bit of evidence on the adversarial image
    (sim,) = _similarity(maps, 1, [box], tolerance=0.0)
    assert sim["empty_adversarial"] and sim["top15_iou"] == 0.0 and sim["spearman"] == 0.0
    assert not sim["pointing_adversarial"]  # its arg-max (0, 0) lies in the box, but it is empty
    (no_boxes,) = _similarity(maps, 1, [torch.zeros(0, 4)], tolerance=0.0)
    assert "pointing_clean" not in no_boxes


def test_unit_image_recovers_the_8bit_pixels() -> None:
    spec = ModelSpec("m", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    pixels = torch.randint(0, 256, (1, 3, 5, 5)).float() / 255
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    assert torch.equal(unit_image((pixels - mean) / std, spec), pixels)
