"""TrainConfig: checked values, optimizer-dependent defaults, and what a resume may change."""

from __future__ import annotations

import pytest

from camscope.errors import UsageError
from camscope.training import TrainConfig


def test_defaults_follow_the_optimizer() -> None:
    adamw = TrainConfig(data="d", out="o")
    sgd = TrainConfig(data="d", out="o", optimizer="sgd")
    assert (adamw.default_lr, adamw.decay) == (1e-3, 0.05)
    assert (sgd.default_lr, sgd.decay) == (0.05, 5e-4)
    assert TrainConfig(data="d", out="o", weight_decay=0.0).decay == 0.0


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"optimizer": "adam"}, "optimizer"),
        ({"val_split": 1.0}, "val split"),
        ({"lr": float("nan")}, "lr"),
        ({"label_smoothing": 1.0}, "label smoothing"),
        ({"epochs": 0}, "epochs"),
        ({"precision": "fp8"}, "precision"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_values_are_named(changes, word) -> None:
    with pytest.raises(UsageError, match=word):
        TrainConfig(data="d", out="o", **changes)


def test_differences_ignore_what_a_resume_may_change() -> None:
    stored = TrainConfig(data="d", out="o", epochs=4).to_dict()
    assert (
        TrainConfig(data="d", out="o", epochs=8, workers=2, stop_after=1).differences(stored) == []
    )
    assert TrainConfig(data="d", out="o", lr=0.1, seed=3).differences(stored) == ["lr", "seed"]
