"""The engine's additions for methods that explain their own score (Finer-CAM) or read second
derivatives (Shapley-CAM): they ride on the shared forward and backward, the Hessian-vector product
costs one backward per target, and none of it leaves a trace on the model, also after an error."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from nets import SmallNet, assert_unchanged, model_state
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from camscope import explain
from camscope.errors import UnsupportedModelError
from camscope.methods import estimate_passes


class CountBackward(torch.autograd.Function):
    """Identity whose backward counts how often it runs (also inside a second-order backward)."""

    calls = 0

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        CountBackward.calls += 1
        return grad


class OnceDifferentiable(torch.autograd.Function):
    """Identity whose backward has no derivative of its own (as fused attention kernels)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad * 1.0


class FailsUnderCreateGraph(torch.autograd.Function):
    """Identity whose backward raises ``error`` when asked to build a graph (``create_graph``,
    which only the second-order backward requests)."""

    error: Exception = RuntimeError("boom in the graph-building backward")

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            raise FailsUnderCreateGraph.error
        return grad


class Wrapped(nn.Module):
    """SmallNet with an autograd Function between its last feature map and the pooling."""

    def __init__(self, fn: type[torch.autograd.Function]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = SmallNet(classes=5)
        self.fn = fn
        self.forward_calls = 0
        with torch.no_grad():
            for m in self.net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)

    def forward(self, x: Tensor) -> Tensor:
        self.forward_calls += 1
        a = self.fn.apply(self.net.features(self.net.stem(x)))
        return self.net.fc(self.net.drop(self.net.pool(a).flatten(1)))


def inputs() -> Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))


def test_second_order_costs_two_backward_calls_per_target() -> None:
    net = Wrapped(CountBackward).eval()
    for targets, k in (([1, 3], 1), ("topk:3", 3)):
        CountBackward.calls, net.forward_calls = 0, 0
        explain(net, inputs(), ["gradcam", "finercam", "shapleycam"], "net.features", targets)
        assert net.forward_calls == 1
        # the shared backward (the targets' and Finer-CAM's columns in one vmapped call), then
        # per target a graph-keeping backward and the Hessian-vector product, which passes
        # through the Function again (the log-softmax of ReST curves behind it)
        assert CountBackward.calls == 1 + 2 * k
    for method, passes in (("shapleycam", 6), ("finercam", 0)):
        estimate = estimate_passes(net, inputs(), [method], "net.features", targets=3)
        assert estimate == {method: passes}


def _mixed_state(net: nn.Module) -> dict[str, Any]:
    """Mixed train/eval flags, a frozen stem, an existing .grad on fc.weight, None elsewhere."""
    net.train()
    net.net.stem[1].eval()
    for p in net.net.stem.parameters():
        p.requires_grad_(False)
    net.net.fc.weight.grad = torch.full_like(net.net.fc.weight, 0.25)
    return model_state(net)


def test_second_order_leaves_the_model_as_it_was() -> None:
    net = Wrapped(CountBackward)
    before = _mixed_state(net)
    res = explain(net, inputs(), ["shapleycam", "finercam"], "net.features", "topk:2")
    assert res.maps["shapleycam"].shape == (2, 2, 16, 16)
    assert torch.isfinite(res.raw["shapleycam"]).all()
    assert_unchanged(net, before)


@pytest.mark.parametrize("fn", [OnceDifferentiable, FailsUnderCreateGraph])
def test_a_model_without_second_derivatives_skips_only_shapleycam(fn: type) -> None:
    net = Wrapped(fn)
    before = _mixed_state(net)
    for targets in ([0, 1], "topk:2"):
        res = explain(net, inputs(), ["gradcam", "finercam", "shapleycam"], "net.features", targets)
        assert set(res.maps) == {"gradcam", "finercam"}
        reason = res.skipped["shapleycam"]
        assert "second derivatives are not available after layer 'net.features'" in reason
        assert ("once_differentiable" if fn is OnceDifferentiable else "boom") in reason
        assert_unchanged(net, before)
    with pytest.raises(UnsupportedModelError, match="pick a layer after the op"):
        explain(net, inputs(), "shapleycam", "net.features", [0, 1], strict=True)
    assert_unchanged(net, before)


def test_an_error_in_the_second_order_backward_leaves_the_model_as_it_was() -> None:
    net = Wrapped(FailsUnderCreateGraph)
    before = _mixed_state(net)
    ok = explain(net, inputs(), "gradcam", "net.features", [0, 1])
    FailsUnderCreateGraph.error = torch.OutOfMemoryError("out of memory in the second backward")
    try:
        # running out of memory is not a missing derivative: it is raised, not skipped
        with pytest.raises(torch.OutOfMemoryError, match="second backward"):
            explain(net, inputs(), ["gradcam", "shapleycam"], "net.features", [0, 1])
    finally:
        FailsUnderCreateGraph.error = RuntimeError("boom in the graph-building backward")
    assert_unchanged(net, before)
    again = explain(net, inputs(), "gradcam", "net.features", [0, 1])
    torch.testing.assert_close(again.maps["gradcam"], ok.maps["gradcam"])
