"""Target resolution and output adapters, on plain tensors (no model)."""

from __future__ import annotations

import math
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
    with pytest.raises(TargetError, match=r"1-D tensor\) or K scores"):
        resolve_targets(LOGITS, lambda out: out[:, :, None])
    with pytest.raises(TargetError, match=r"shape \(2, 0\)"):
        resolve_targets(LOGITS, lambda out: out[:, :0])
    with pytest.raises(TargetError, match="does not depend"):
        resolve_targets(LOGITS, lambda out: out.detach()[:, 0])


def test_callable_target_with_several_scores_per_sample() -> None:
    # (B, K) scores: K maps per sample, like top-k, with class ids -1 (no class)
    res = resolve_targets(LOGITS, lambda out: out[:, [2, 0]] * 2)
    assert res.per_class and res.head is None
    assert res.class_ids.tolist() == [[-1, -1], [-1, -1]]
    assert res.scores.tolist() == (LOGITS[:, [2, 0]] * 2).tolist()


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


# --- single-logit (sigmoid) and multi-label heads (issue 16, item 3) --------------------------
# binary_net: A0 = x, A1 = -x (1x1 conv), logit = mean(A0) (head weights [1, 0]). On HAND_X =
# [[0, 1], [2, 3]] the logit is 1.5: the positive class (1) with p = sigmoid(1.5).
# Score-CAM masks: M0 = x / 3 -> masked logit mean(x^2 / 3) = 7/6; M1 = (3 - x) / 3 -> 1/3.

HAND_X = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)


def binary_net(outputs: int = 1) -> torch.nn.Module:
    from torch import nn

    feat = nn.Conv2d(1, 2, 1, bias=False)
    head = nn.Linear(2, outputs, bias=False)
    with torch.no_grad():
        feat.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        head.weight.copy_(torch.eye(2)[:outputs])
    return nn.Sequential(feat, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_single_logit_head_has_a_negative_and_a_positive_class() -> None:
    logits = torch.tensor([[1.5], [-0.25], [0.0]], requires_grad=True)
    top = resolve_targets(logits, "top1")
    assert top.head is not None and top.head.kind == "binary"
    assert top.class_ids.tolist() == [[1], [0], [1]]  # p >= 0.5 is the positive side
    assert top.scores.detach().tolist() == [[1.5], [0.25], [0.0]]  # class 0 scores -logit
    both = resolve_targets(logits, "topk:2")
    assert both.class_ids.tolist() == [[1, 0], [0, 1], [1, 0]]
    p = top.head.probabilities(logits.detach(), both.class_ids)
    assert torch.allclose(p[0], torch.tensor([sigmoid(1.5), 1 - sigmoid(1.5)]))
    with pytest.raises(TargetError, match=r"classes 0\.\.1"):
        resolve_targets(logits, 2)
    with pytest.raises(TargetError, match="asks for 3 classes; the model has 2"):
        resolve_targets(logits, "top3")


def test_binary_model_maps_and_probabilities() -> None:
    from camscope import explain

    net = binary_net()
    res = explain(net, HAND_X, ["gradcam", "cam", "scorecam", "ablationcam"], "0", "top1")
    assert res.targets.tolist() == [1] and res.probability_kind == "sigmoid"
    assert res.probabilities is not None
    assert float(res.probabilities[0]) == pytest.approx(sigmoid(1.5))
    probs = res.class_probabilities()
    assert probs is not None and probs[0].tolist() == pytest.approx(
        [1 - sigmoid(1.5), sigmoid(1.5)]
    )
    x = HAND_X[0, 0]
    # Grad-CAM of the logit: alpha = (1/4, 0), raw = x / 4; CAM: w = (1, 0), raw = x
    assert torch.allclose(res.raw["gradcam"][0], x / 4)
    assert torch.allclose(res.raw["cam"][0], x)
    # Score-CAM weights are sigmoid probabilities (a softmax over one logit is always 1)
    w0, w1 = sigmoid(7 / 6), sigmoid(1 / 3)
    assert torch.allclose(res.raw["scorecam"][0], (w0 - w1) * x, atol=1e-5)
    assert torch.allclose(res.raw["ablationcam"][0], x, atol=1e-5)  # w = (1.5 - 0) / 1.5
    negative = explain(net, HAND_X, ["gradcam", "cam", "scorecam", "smoothgradcam++"], "0", 0)
    assert negative.targets.tolist() == [0]
    assert float(negative.probabilities[0]) == pytest.approx(1 - sigmoid(1.5))
    assert torch.allclose(negative.raw["gradcam"][0], -x / 4)  # the map of -logit
    assert torch.allclose(negative.raw["cam"][0], -x)
    n0, n1 = sigmoid(-7 / 6), sigmoid(-1 / 3)
    assert torch.allclose(negative.raw["scorecam"][0], (n0 - n1) * x, atol=1e-5)


def test_binary_top1_picks_the_negative_side_below_one_half() -> None:
    from camscope import explain

    res = explain(binary_net(), -HAND_X, "gradcam", "0")  # logit -1.5
    assert res.targets.tolist() == [0]
    assert float(res.probabilities[0]) == pytest.approx(sigmoid(1.5))


def test_multilabel_heads_use_a_sigmoid_per_class() -> None:
    from camscope import explain

    net = binary_net(outputs=2)  # logits (1.5, -1.5)
    soft = explain(net, HAND_X, ["gradcam", "scorecam"], "0", 0)
    multi = explain(net, HAND_X, ["gradcam", "scorecam"], "0", 0, multilabel=True)
    assert soft.probability_kind == "softmax" and multi.probability_kind == "sigmoid"
    assert float(soft.probabilities[0]) == pytest.approx(sigmoid(3.0))  # softmax of (a, -a)
    assert float(multi.probabilities[0]) == pytest.approx(sigmoid(1.5))
    assert torch.allclose(multi.raw["gradcam"], soft.raw["gradcam"])  # scores stay the logits
    w0, w1 = sigmoid(7 / 6), sigmoid(1 / 3)  # Score-CAM: per-class sigmoid, not the softmax
    assert torch.allclose(multi.raw["scorecam"][0], (w0 - w1) * HAND_X[0, 0], atol=1e-5)
    probs = multi.class_probabilities()
    assert probs is not None and probs[0].tolist() == pytest.approx([sigmoid(1.5), sigmoid(-1.5)])
