"""The one prediction path: classes and probabilities of every head and output kind, by hand."""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import pytest
import torch
from nets import GapNet, hook_counts, ramp
from torch import nn

from camscope import explain
from camscope.core.prediction import ClassHead, Prediction, classify, predict
from camscope.errors import UsageError


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def same(ranked: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """Same classes in the same order, probabilities within 1e-6."""
    return [c for c, _ in ranked] == [c for c, _ in expected] and [
        v for _, v in ranked
    ] == pytest.approx([v for _, v in expected], abs=1e-6)


def test_softmax_by_hand() -> None:
    # p = e^z / sum e^z with z = (ln 1, ln 2, ln 5): (0.125, 0.25, 0.625)
    p = predict(torch.tensor([[0.0, math.log(2.0), math.log(5.0)]]) + 3.0)
    assert p.probability_kind == "softmax" and p.num_classes == 3 and not p.binary
    torch.testing.assert_close(p.probabilities, torch.tensor([[0.125, 0.25, 0.625]]))
    assert p.classes.tolist() == [2]
    assert same(p.ranked(0, 2), [(2, 0.625), (1, 0.25)])
    values, ids = p.top(5)  # K above the class count: every class, best first
    assert ids.tolist() == [[2, 1, 0]]
    torch.testing.assert_close(values, torch.tensor([[0.625, 0.25, 0.125]]))
    assert p.rank(0, 0) == 3 and p.rank(0, 2) == 1
    assert p.best_of(0, [0, 1]) == 1 and p.correct(0, [2]) and not p.correct(0, [0, 1])


@pytest.mark.parametrize(("z", "said"), [(math.log(3.0), 1), (-math.log(3.0), 0), (0.0, 1)])
def test_a_single_logit_is_a_binary_classifier(z: float, said: int) -> None:
    """Class 1 has p = sigmoid(z), class 0 has 1 - p (sigmoid(ln 3) = 0.75); a tie says 1."""
    p = predict(torch.tensor([[z]]))
    assert p.binary and p.probability_kind == "sigmoid" and p.num_classes == 2
    p1 = sigmoid(z)
    torch.testing.assert_close(p.probabilities, torch.tensor([[1 - p1, p1]]))
    assert p.classes.tolist() == [said]
    assert same(p.ranked(0), [(said, max(p1, 1 - p1)), (1 - said, min(p1, 1 - p1))])
    assert p.rank(0, 1 - said) == (1 if z == 0 else 2)
    assert p.best_of(0, [0, 1]) == (0 if z == 0 else said)  # a tie: the first listed
    assert p.best_of(0, [1, 0]) == (1 if z == 0 else said)
    with pytest.raises(ValueError, match="class 2 is out of range"):
        p.best_of(0, [2])


def test_multilabel_is_a_sigmoid_per_class_ranked_by_logit() -> None:
    logits = torch.tensor([[math.log(3.0), 0.0, -math.log(3.0), 2.0]])
    p = predict(logits, multilabel=True)
    assert p.probability_kind == "sigmoid" and p.num_classes == 4
    torch.testing.assert_close(
        p.probabilities, torch.tensor([[0.75, 0.5, 0.25, sigmoid(2.0)]]), rtol=0, atol=1e-6
    )
    assert p.classes.tolist() == [3] and [c for c, _ in p.ranked(0, 4)] == [3, 0, 1, 2]


@pytest.mark.parametrize(
    "wrap",
    [
        lambda z: z,
        lambda z: (z, torch.zeros(1)),
        lambda z: [z],
        lambda z: {"logits": z, "aux": torch.ones(1)},
        lambda z: SimpleNamespace(logits=z, hidden=None),  # a ModelOutput
    ],
    ids=["tensor", "tuple", "list", "dict", "model-output"],
)
def test_every_output_kind_gives_the_same_prediction(wrap) -> None:
    z = torch.tensor([[1.0, 3.0], [2.0, -1.0]])
    p = predict(wrap(z))
    assert p.classes.tolist() == [1, 0]
    torch.testing.assert_close(p.probabilities, z.softmax(1))


@pytest.mark.parametrize(
    ("output", "match"),
    [
        ({"scores": torch.zeros(1, 2)}, "no 'logits'"),
        ("text", "cannot find class scores"),
        (torch.zeros(1, 2, 3), r"\(batch, classes\) scores; the model gave \(1, 2, 3\)"),
    ],
)
def test_outputs_without_class_scores_are_usage_errors(output, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        predict(output)


def test_an_adapter_picks_the_scores() -> None:
    p = predict({"scores": torch.tensor([[0.0, 1.0]])}, adapter=lambda out: out["scores"])
    assert p.classes.tolist() == [1]


def test_select_and_cpu_keep_rows_and_head() -> None:
    p = predict(torch.tensor([[0.5], [-0.5], [2.0]]))
    q = p.select([2, 1]).cpu()
    assert q.head == ClassHead("binary") and q.classes.tolist() == [1, 0]
    torch.testing.assert_close(q.probabilities, p.probabilities[[2, 1]])


def test_classify_matches_explain_and_leaves_the_model_as_it_was() -> None:
    """GapNet on ramp(): logits (6 - 31/9, -6 + 62/9 + 0.5, 6/2 + 31/18 - 1) by hand."""
    net = GapNet().train()
    flags = [p.requires_grad for p in net.parameters()]
    p = classify(net, ramp(2))
    z = torch.tensor([6 - 31 / 9, -6 + 62 / 9 + 0.5, 3 + 31 / 18 - 1])
    torch.testing.assert_close(p.logits, z.repeat(2, 1))
    assert p.classes.tolist() == [2, 2]
    assert net.training and all(m.training for m in net.modules())
    assert [q.requires_grad for q in net.parameters()] == flags
    assert all(q.grad is None for q in net.parameters()) and hook_counts(net) == {}
    library = explain(net, ramp(2), "gradcam").prediction
    assert library is not None
    torch.testing.assert_close(library.probabilities, p.probabilities)
    assert torch.equal(library.classes, p.classes)


def test_classify_restores_the_modes_after_an_error_and_refuses_unknown_modes() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(1)

        def forward(self, x):
            assert not self.training  # classified in eval mode
            raise RuntimeError("boom")

    net = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        classify(net, ramp())
    assert net.training and net.bn.training
    with pytest.raises(UsageError, match="'eval' or 'as-is'"):
        classify(net, ramp(), mode="train")


def test_classify_as_is_keeps_train_mode_and_holds_the_model_lock() -> None:
    from camscope.core.concurrency import model_lock

    seen: list[bool] = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x.flatten(1)[:, :3]

    net = Probe().train()
    assert classify(net, ramp(), mode="as-is").num_classes == 3 and seen == [True]
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with model_lock(net):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    done: list[Prediction] = []
    worker = threading.Thread(target=lambda: done.append(classify(net, ramp())))
    worker.start()
    worker.join(0.2)
    assert not done  # waits for the lock another caller holds
    release.set()
    worker.join(5)
    thread.join(5)
    assert len(done) == 1


def test_log_probabilities_by_hand_and_differentiable() -> None:
    """softmax: log p_c = z_c - log sum e^z; a sigmoid head: log sigmoid(+-z)."""
    z = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    ids = torch.tensor([[1, 0]])
    got = ClassHead("softmax").log_probabilities(z, ids)
    torch.testing.assert_close(got, torch.tensor([[math.log(0.75), math.log(0.25)]]))
    got.sum().backward()
    assert z.grad is not None
    one = torch.tensor([[math.log(3.0)]])
    torch.testing.assert_close(
        ClassHead("binary").log_probabilities(one, torch.tensor([[1, 0]])),
        torch.tensor([[math.log(0.75), math.log(0.25)]]),
    )
    torch.testing.assert_close(
        ClassHead("multilabel").log_probabilities(z.detach(), torch.tensor([[1]])),
        torch.tensor([[math.log(0.75)]]),
    )
