"""Engine behaviour: one pass, graph cut at the layer, targets, output adapters, several layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from nets import GapNet, SideBranch, SmallNet, hook_counts, ramp
from torch import Tensor, nn

from camscope import explain, get_method, list_methods
from camscope.errors import LayerError, TargetError, UsageError

# methods served by the shared pass: gradients (not guided, not second order) and activations only
# (the second-order backward of Shapley-CAM is counted in tests/core/test_second_order.py)
GRADIENT_METHODS = [
    m
    for m in list_methods()
    if get_method(m).needs_gradients
    and not get_method(m).needs_guided_gradients
    and not get_method(m).needs_hessian
] + ["eigencam"]
GUIDED_METHODS = [m for m in list_methods() if get_method(m).needs_guided_gradients]


class CountBackward(torch.autograd.Function):
    """Identity whose backward counts how often it runs."""

    calls = 0

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        CountBackward.calls += 1
        return grad


class GradProbe(nn.Module):
    """Identity that records whether autograd was recording when it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(torch.is_grad_enabled())
        return x


class CountingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.before = GradProbe()
        self.body = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.after = GradProbe()
        self.fc = nn.Linear(6, 5)
        self.forward_calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.forward_calls += 1
        a = self.body(self.before(self.stem(x)))
        a = self.after(CountBackward.apply(a))
        return self.fc(a.mean(dim=(2, 3)))


def test_one_forward_one_backward_for_all_gradient_methods() -> None:
    net, x = CountingNet().eval(), torch.randn(2, 3, 8, 8)
    CountBackward.calls = 0
    res = explain(net, x, [*GRADIENT_METHODS, "cam"], layer="body", targets=[0, 3])
    assert set(res.maps) == {*GRADIENT_METHODS, "cam"}
    assert net.forward_calls == 1
    assert CountBackward.calls == 1
    # the graph starts at the layer: what runs before it records nothing, what runs after does
    assert net.before.seen == [False]
    assert net.after.seen == [True]


def test_top_k_shares_the_forward_and_the_backward() -> None:
    net, x = CountingNet().eval(), torch.randn(2, 3, 8, 8)
    CountBackward.calls = 0
    explain(net, x, GRADIENT_METHODS, layer="body", targets="topk:3")
    assert net.forward_calls == 1
    assert CountBackward.calls == 1  # one vmapped backward for the three targets


def test_guided_methods_add_one_pass() -> None:
    net, x = CountingNet().eval(), torch.randn(2, 3, 8, 8)
    CountBackward.calls = 0
    explain(net, x, [*GRADIENT_METHODS, *GUIDED_METHODS], layer="body", targets=1)
    assert net.forward_calls == 2
    assert CountBackward.calls == 2


class NoBatchingRule(torch.autograd.Function):
    """Identity whose backward cannot run under vmap (``.item()``), forcing the per-target loop."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        _ = float(grad.sum().item())
        return grad


class LoopNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: Tensor) -> Tensor:
        a = NoBatchingRule.apply(self.conv(x))
        return self.fc(torch.relu(a).mean(dim=(2, 3)))


def test_top_k_falls_back_to_one_backward_per_target() -> None:
    # regression: the failed batched backward used to free the graph the fallback needs
    net, x = LoopNet().eval(), torch.randn(2, 3, 8, 8)
    topk = explain(net, x, "gradcam", layer="conv", targets="topk:3")
    for j in range(3):
        one = explain(net, x, "gradcam", layer="conv", targets=topk.targets[:, j].tolist())
        torch.testing.assert_close(topk.raw["gradcam"][:, j], one.raw["gradcam"], atol=1e-6, rtol=0)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return SmallNet(classes=6).eval()


def test_top_k_equals_separate_single_target_calls() -> None:
    net, x = small_net(), torch.randn(2, 3, 16, 16)
    methods = [m for m in list_methods() if get_method(m).models == "any"]  # ViTs: own tests
    topk = explain(net, x, methods, layer="features", targets="topk:3")
    assert topk.targets.shape == (2, 3)
    assert topk.scores.shape == (2, 3) and topk.probabilities.shape == (2, 3)
    # the model's own ranking
    assert torch.equal(topk.targets, topk.logits.topk(3, dim=1).indices)
    for j in range(3):
        one = explain(net, x, methods, layer="features", targets=topk.targets[:, j].tolist())
        for m in methods:
            torch.testing.assert_close(topk.maps[m][:, j], one.maps[m], atol=1e-5, rtol=0)
            torch.testing.assert_close(topk.raw[m][:, j], one.raw[m], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(topk.scores[:, j], one.scores)


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (4, [4, 4]),
        ([5, 1], [5, 1]),
        (torch.tensor([2, 0]), [2, 0]),
        ("top1", None),
        ("TOP1", None),
    ],
)
def test_class_targets(targets: Any, expected: list[int] | None) -> None:
    net, x = small_net(), torch.randn(2, 3, 16, 16)
    res = explain(net, x, "gradcam", layer="features", targets=targets)
    if expected is None:
        expected = res.logits.argmax(1).tolist()
    assert res.targets.tolist() == expected
    assert res.maps["gradcam"].shape == (2, 16, 16)
    logits = net(x).detach()
    torch.testing.assert_close(res.scores, logits.gather(1, torch.tensor(expected)[:, None])[:, 0])
    probs = logits.softmax(1).gather(1, torch.tensor(expected)[:, None])[:, 0]
    torch.testing.assert_close(res.probabilities, probs)


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        (6, "out of range.*0..5"),
        ([1, -1], "out of range"),
        ([1, 2, 3], "3 target classes for a batch of 2"),
        ("best", "unknown target 'best'"),
        ("topk:7", "asks for 7 classes; the model has 6"),
        ("top0", "asks for 0 classes"),
        (2.5, "cannot use 2.5"),
        (lambda out: out[:, :, None], "1-D tensor"),  # (B, K) scores are K maps each
        (lambda out: out[:, 0].tolist(), "one score per sample"),
        (lambda out: out[:, 0].repeat(2), "4 scores for a batch of 2"),
        (lambda out: torch.ones(2), "does not depend"),
    ],
)
def test_bad_targets(targets: Any, match: str) -> None:
    net = small_net()
    with pytest.raises(TargetError, match=match):
        explain(net, torch.randn(2, 3, 16, 16), "gradcam", layer="features", targets=targets)
    assert hook_counts(net) == {}


class SegNet(nn.Module):
    """A tiny fully convolutional network: ``(B, 3, H, W)`` -> per-pixel scores ``(B, 3, H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Conv2d(5, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.relu(self.conv(x)))


def test_callable_segmentation_target_matches_autograd() -> None:
    net, x = SegNet().eval(), torch.randn(2, 3, 8, 8)
    mask = torch.zeros(8, 8)
    mask[2:5, 1:6] = 1.0

    def score(out: Tensor) -> Tensor:  # class 1's logits summed over the mask
        return (out[:, 1] * mask).sum(dim=(1, 2))

    res = explain(net, x, ["gradcam", "hirescam"], layer="relu", targets=score)
    assert res.targets.tolist() == [-1, -1]
    assert res.probabilities is None and res.logits is None
    # an independent Grad-CAM: activations and gradients straight from autograd
    acts = net.relu(net.conv(x)).detach().requires_grad_()
    scores = score(net.head(acts))
    (grads,) = torch.autograd.grad(scores.sum(), acts)
    torch.testing.assert_close(res.scores, scores.detach())
    weights = grads.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(res.raw["gradcam"], (weights * acts).sum(1).detach())
    torch.testing.assert_close(res.raw["hirescam"], (grads * acts).sum(1).detach())


# --- output adapters ---------------------------------------------------------------------------


@dataclass
class ModelOutput:
    logits: Tensor
    hidden: Tensor


class Wrapped(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net = GapNet()
        self.kind = kind

    def forward(self, x: Tensor) -> Any:
        logits = self.net(x)
        if self.kind == "tuple":
            return (logits, logits * 0)
        if self.kind == "dict":
            return {"aux": logits * 0, "logits": logits}
        if self.kind == "object":
            return ModelOutput(logits=logits, hidden=logits * 0)
        return {"out": logits, "aux": logits * 0}


@pytest.mark.parametrize("kind", ["tuple", "dict", "object"])
def test_output_adapters(kind: str) -> None:
    plain = explain(GapNet(), ramp(), "gradcam", layer="relu", targets=0)
    res = explain(Wrapped(kind), ramp(), "gradcam", layer="net.relu", targets=0)
    torch.testing.assert_close(res.raw["gradcam"], plain.raw["gradcam"])
    torch.testing.assert_close(res.logits, plain.logits)


def test_dict_without_logits_is_a_clear_error() -> None:
    net = Wrapped("other")
    with pytest.raises(UsageError, match=r"keys \['aux', 'out'\].*output_adapter"):
        explain(net, ramp(), "gradcam", layer="net.relu")
    res = explain(net, ramp(), "gradcam", layer="net.relu", output_adapter=lambda o: o["out"])
    assert res.targets.tolist() == [2]  # GapNet's top-1
    assert hook_counts(net) == {}


# --- several layers ----------------------------------------------------------------------------


def test_several_layers_fuse_the_normalised_maps() -> None:
    net, x = small_net(), torch.randn(2, 3, 16, 16)
    methods = ["gradcam", "layercam", "eigencam"]
    res = explain(net, x, methods, layer=["stem", "features", "stem"], targets=[1, 2])
    assert res.layer == ["stem", "features"]  # duplicates dropped, order kept
    assert set(res.layer_maps) == {"stem", "features"} == set(res.layer_raw)
    for m in methods:
        for name in ("stem", "features"):
            single = explain(net, x, m, layer=name, targets=[1, 2])
            torch.testing.assert_close(res.layer_maps[name][m], single.maps[m], atol=1e-6, rtol=0)
            torch.testing.assert_close(res.layer_raw[name][m], single.raw[m], atol=1e-6, rtol=0)
        # fused = mean of the per-layer maps, min-max renormalised per image
        mean = (res.layer_maps["stem"][m] + res.layer_maps["features"][m]) / 2
        low = mean.amin(dim=(1, 2), keepdim=True)
        high = mean.amax(dim=(1, 2), keepdim=True)
        torch.testing.assert_close(res.maps[m], (mean - low) / (high - low), atol=1e-6, rtol=0)
        assert res.raw[m].shape == (2, 16, 16)  # the first layer's raw map (stem: stride 1)
        torch.testing.assert_close(res.raw[m], res.layer_raw["stem"][m])


def test_eigen_smooth_gives_valid_maps() -> None:
    net, x = small_net(), torch.randn(2, 3, 16, 16)
    channel_methods = [m for m in list_methods() if get_method(m).channel_contributions]
    res = explain(net, x, channel_methods, layer="features", targets=[0, 1], eigen_smooth=True)
    for m in channel_methods:
        maps = res.maps[m]
        assert maps.shape == (2, 16, 16) and torch.isfinite(maps).all()
        assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    # the Grad-CAM contributions' first component equals a direct SVD of those contributions
    plain = explain(net, x, "gradcam", layer="features", targets=[0, 1])
    acts = net.features(net.stem(x)).detach()
    assert torch.isfinite(plain.raw["gradcam"]).all() and acts.shape[1] == 6
    # non-smoothed gradcam sums the channels; smoothed differs
    assert not torch.allclose(res.raw["gradcam"], plain.raw["gradcam"])


# --- input checks ------------------------------------------------------------------------------


def test_input_and_method_errors() -> None:
    net = small_net()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(UsageError, match=r"shape \(batch, channels, height, width\)"):
        explain(net, x[0], "gradcam", layer="features")
    with pytest.raises(UsageError, match="float tensor"):
        explain(net, (x * 10).long(), "gradcam", layer="features")
    with pytest.raises(UsageError, match="no method requested"):
        explain(net, x, [], layer="features")
    with pytest.raises(UsageError, match=r"unknown method 'gradcm'.*'gradcam'"):
        explain(net, x, "gradcm", layer="features")
    assert hook_counts(net) == {}


def test_layer_errors() -> None:
    net, x = SideBranch().eval(), torch.randn(1, 3, 8, 8)
    with pytest.raises(UsageError, match=r"layer 'never' did not run"):
        explain(net, x, "gradcam", layer="never")
    with pytest.raises(UsageError, match=r"does not depend on layer 'unused'"):
        explain(net, x, "gradcam", layer="unused")
    with pytest.raises(LayerError, match=r"layer 'fc' outputs shape \(1, 3\)"):
        explain(net, x, "gradcam", layer="fc")
    assert hook_counts(net) == {}


# --- modes: eval by default, the caller's modes with mode="as-is" (issue 16, item 4) ----------


def train_mode_net() -> nn.Module:
    """SmallNet with non-trivial batch-norm statistics and a dropout, left in train mode."""
    net = SmallNet(classes=5)
    net.drop = nn.Dropout(0.5)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 3.0)
    return net.train()


def test_a_train_mode_model_is_explained_in_eval_mode_and_left_in_train_mode() -> None:
    net, x = train_mode_net(), torch.randn(1, 3, 16, 16)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    reference = explain(net.eval(), x, ["gradcam", "scorecam"], "features", "top1")
    net.train()
    res = explain(net, x, ["gradcam", "scorecam"], "features", "top1")
    assert res.targets.tolist() == reference.targets.tolist()
    for method in ("gradcam", "scorecam"):
        torch.testing.assert_close(res.maps[method], reference.maps[method], atol=1e-6, rtol=0)
    torch.testing.assert_close(res.probabilities, reference.probabilities)
    assert res.warnings == []
    assert all(m.training for m in net.modules())
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_as_is_keeps_train_mode_and_warns_about_batch_norm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net, x = train_mode_net(), torch.randn(1, 3, 16, 16)
    net.drop.p = 0.0  # deterministic, so that the map can be compared
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with caplog.at_level("WARNING"):
        res = explain(net, x, "gradcam", "features", 0, mode="as-is")
    seen: list[bool] = []
    handle = net.features.register_forward_hook(lambda m, _i, _o: seen.append(m.training))
    try:
        explain(net, x, "gradcam", "features", 0, mode="as-is")
    finally:
        handle.remove()
    assert seen == [True]  # the forward ran in the caller's train mode
    assert any("train mode" in w and "single image" in w for w in res.warnings), res.warnings
    assert "single image" in caplog.text
    evaluated = explain(net, x, "gradcam", "features", 0)
    assert not torch.allclose(res.maps["gradcam"], evaluated.maps["gradcam"], atol=1e-3)
    assert all(m.training for m in net.modules())
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    with pytest.raises(UsageError, match="mode must be one of"):
        explain(net, x, "gradcam", "features", mode="train")
