"""Target resolution and output adapters, on plain tensors (no model)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from camscope.core.targets import default_output_adapter, parse_topk, resolve_targets
from camscope.errors import TargetError, UsageError

# two samples, four classes; sample 0 ranks 2 > 0 > 3 > 1, sample 1 ranks 1 > 3 > 0 > 2
LOGITS = torch.tensor([[3.0, 0.0, 5.0, 1.0], [2.0, 9.0, -1.0, 4.0]], requires_grad=True)


@pytest.mark.parametrize(
    ("spec", "k"),
    [("top1", 1), ("top5", 5), ("topk:3", 3), (" TopK:12 ", 12), ("top", None), ("topk:", None)],
)
def test_parse_topk(spec: str, k: int | None) -> None:
    assert parse_topk(spec) == k


def test_topk_ranks_classes() -> None:
    res = resolve_targets(LOGITS, "topk:3")
    assert res.per_class
    assert res.class_ids.tolist() == [[2, 0, 3], [1, 3, 0]]
    assert res.scores.tolist() == [[5.0, 3.0, 1.0], [9.0, 4.0, 2.0]]
    assert res.scores.requires_grad
    top1 = resolve_targets(LOGITS, "top1")
    assert not top1.per_class and top1.class_ids.tolist() == [[2], [1]]


@pytest.mark.parametrize(
    ("spec", "ids"),
    [(3, [3, 3]), ([0, 2], [0, 2]), ((1, 1), [1, 1]), (torch.tensor([3, 0]), [3, 0])],
)
def test_explicit_classes(spec, ids: list[int]) -> None:
    res = resolve_targets(LOGITS, spec)
    assert not res.per_class
    assert res.class_ids[:, 0].tolist() == ids
    assert res.scores[:, 0].tolist() == [LOGITS[i, c].item() for i, c in enumerate(ids)]


@pytest.mark.parametrize("spec", [[[2, 0, 2], [3, 1, 1]], torch.tensor([[2, 0, 2], [3, 1, 1]])])
def test_several_explicit_classes_per_sample(spec) -> None:
    res = resolve_targets(LOGITS, spec)
    assert res.per_class
    assert res.class_ids.tolist() == [[2, 0, 2], [3, 1, 1]]
    assert res.scores.tolist() == [[5.0, 3.0, 5.0], [4.0, 9.0, 9.0]]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (4, r"class 4 is out of range: the model has classes 0..3"),
        ([0, -2], "class -2 is out of range"),
        ([0, 1, 2], "3 target classes for a batch of 2"),
        ("topk:5", "asks for 5 classes; the model has 4"),
        ("second", "unknown target 'second'"),
        (True, "cannot use True"),
        ([0.5, 1.0], "cannot use"),
        ([[0, 1], [2]], "same, non-zero length"),
        ([[0, 1], [2, 0.5]], "must hold class indices"),
        ([[0, 1]], "for 1 images, the batch has 2"),
        (torch.tensor([[0, 4], [1, 1]]), "class 4 is out of range"),
    ],
)
def test_bad_class_targets(spec, match: str) -> None:
    with pytest.raises(TargetError, match=match):
        resolve_targets(LOGITS, spec)


def test_callable_target() -> None:
    res = resolve_targets(LOGITS, lambda out: out[:, 0] - out[:, 1])
    assert res.class_ids.tolist() == [[-1], [-1]]
    assert res.scores[:, 0].tolist() == [3.0, -7.0]
    with pytest.raises(TargetError, match="1-D tensor"):
        resolve_targets(LOGITS, lambda out: out)
    with pytest.raises(TargetError, match="does not depend"):
        resolve_targets(LOGITS, lambda out: out.detach()[:, 0])


def test_class_targets_need_two_dimensional_scores() -> None:
    with pytest.raises(TargetError, match=r"shape \(2, 4, 3\).*callable target"):
        resolve_targets(torch.zeros(2, 4, 3), 0)


def test_default_output_adapter() -> None:
    t = torch.zeros(2, 3)
    assert default_output_adapter(t) is t
    assert default_output_adapter((t, torch.ones(1))) is t
    assert default_output_adapter(["aux", t]) is t
    assert default_output_adapter({"logits": t, "x": 1}) is t
    assert default_output_adapter(SimpleNamespace(logits=t, hidden=None)) is t
    with pytest.raises(UsageError, match=r"keys \['boxes', 'scores'\] and no 'logits'"):
        default_output_adapter({"scores": t, "boxes": t})
    with pytest.raises(UsageError, match="output_adapter"):
        default_output_adapter("text")
