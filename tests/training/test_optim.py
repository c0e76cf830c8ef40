"""Optimizers and the warm-up + cosine schedule, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from camscope.training.optim import build_optimizer, build_schedule, lr_factor


def test_lr_factor_by_hand() -> None:
    # warm-up over 4 steps: 1/4, 2/4, 3/4, 4/4; then cosine over the 8 remaining steps
    assert [lr_factor(s, 4, 12, 0.0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 12, 0.0) == 1.0
    assert lr_factor(8, 4, 12, 0.0) == pytest.approx(0.5)  # half way: (1 + cos(pi/2)) / 2
    assert lr_factor(6, 4, 12, 0.0) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert lr_factor(12, 4, 12, 0.1) == pytest.approx(0.1)  # ends at min_lr / lr


def test_schedule_steps_per_batch_and_no_decay_on_biases() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = build_optimizer(model, "sgd", 0.1, 5e-4, momentum=0.9, nesterov=True)
    decayed, free = optimizer.param_groups
    assert [p.ndim for p in decayed["params"]] == [2, 2] and decayed["weight_decay"] == 5e-4
    assert all(p.ndim == 1 for p in free["params"]) and free["weight_decay"] == 0.0
    assert decayed["nesterov"] and decayed["momentum"] == 0.9
    schedule = build_schedule(
        optimizer, steps_per_epoch=5, epochs=3, warmup_epochs=1.0, lr=0.1, min_lr=0.0
    )
    seen = []
    for _ in range(15):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert seen[0] == pytest.approx(0.02) and seen[4] == pytest.approx(0.1)
    assert seen[-1] == pytest.approx(0.1 * (1 + math.cos(math.pi * 9 / 10)) / 2)
    assert isinstance(build_optimizer(model, "adamw", 1e-3, 0.05), torch.optim.AdamW)
