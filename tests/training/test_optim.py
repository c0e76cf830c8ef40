"""Optimizers and the warm-up + cosine schedule (timm's helpers, as camscope sets them up),
checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from camscope.training.optim import build_optimizer, build_schedule


def _rates(steps_per_epoch: int, epochs: int, warmup_epochs: float, min_lr: float) -> list[float]:
    optimizer = build_optimizer(nn.Linear(2, 2), "sgd", 1.0, 0.0)
    schedule = build_schedule(optimizer, steps_per_epoch, epochs, warmup_epochs, 1.0, min_lr)
    seen = []
    for _ in range(steps_per_epoch * epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return seen


def test_schedule_by_hand() -> None:
    # warm-up over 4 steps: 1/5, 2/5, 3/5, 4/5; then cosine over the 8 remaining steps
    rates = _rates(4, 3, warmup_epochs=1.0, min_lr=0.0)
    assert rates[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert rates[4] == 1.0
    assert rates[8] == pytest.approx(0.5)  # half way: (1 + cos(pi/2)) / 2
    assert rates[6] == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert rates[11] == pytest.approx((1 + math.cos(math.pi * 7 / 8)) / 2)
    # the cosine runs down to min_lr / lr (reached one step after the last)
    ends = _rates(4, 3, warmup_epochs=0.0, min_lr=0.1)
    assert ends[0] == 1.0 and ends[-1] == pytest.approx(
        0.1 + 0.9 * (1 + math.cos(math.pi * 11 / 12)) / 2
    )


def test_schedule_steps_per_batch_and_no_decay_on_biases() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = build_optimizer(model, "sgd", 0.1, 5e-4, momentum=0.9, nesterov=True)
    decayed = next(g for g in optimizer.param_groups if g["weight_decay"] > 0)
    free = next(g for g in optimizer.param_groups if g["weight_decay"] == 0)
    assert len(optimizer.param_groups) == 2
    assert [p.ndim for p in decayed["params"]] == [2, 2] and decayed["weight_decay"] == 5e-4
    assert all(p.ndim == 1 for p in free["params"]) and free["weight_decay"] == 0.0
    assert len(free["params"]) == 4  # two biases, the norm's weight and bias
    assert decayed["nesterov"] and decayed["momentum"] == 0.9
    schedule = build_schedule(
        optimizer, steps_per_epoch=5, epochs=3, warmup_epochs=1.0, lr=0.1, min_lr=0.0
    )
    seen = []
    for _ in range(15):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    assert all(len(set(rates)) == 1 for rates in seen)  # both groups follow the schedule
    assert seen[0][0] == pytest.approx(0.1 / 6) and seen[4][0] == pytest.approx(0.1 * 5 / 6)
    assert seen[5][0] == pytest.approx(0.1)
    assert seen[-1][0] == pytest.approx(0.1 * (1 + math.cos(math.pi * 9 / 10)) / 2)
    assert isinstance(build_optimizer(model, "adamw", 1e-3, 0.05), torch.optim.AdamW)


def test_a_resumed_schedule_continues_where_it_stopped() -> None:
    optimizer = build_optimizer(nn.Linear(2, 2), "sgd", 1.0, 0.0)
    schedule = build_schedule(optimizer, 4, 3, 1.0, 1.0, 0.0)
    for _ in range(7):
        schedule.step()
    state = schedule.state_dict()
    assert state == {"updates": 7}
    again = build_optimizer(nn.Linear(2, 2), "sgd", 1.0, 0.0)
    resumed = build_schedule(again, 4, 3, 1.0, 1.0, 0.0)
    resumed.load_state_dict(state)
    assert again.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
    assert again.param_groups[0]["lr"] == pytest.approx((1 + math.cos(math.pi * 3 / 8)) / 2)
    # a checkpoint of the torch LambdaLR schedule of earlier versions counted the same updates
    older = build_schedule(build_optimizer(nn.Linear(2, 2), "sgd", 1.0, 0.0), 4, 3, 1.0, 1.0, 0.0)
    older.load_state_dict({"last_epoch": 7, "base_lrs": [1.0]})
    assert older.updates == 7
