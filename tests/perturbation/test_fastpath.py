"""The fast copy for gradient-free passes: same function, traced only when faithful, no side
effects, cache invalidation, reduced precision as an opt-in."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from camscope.errors import UsageError
from camscope.perturbation import fastpath
from camscope.perturbation.fastpath import FastForward, _Traced

CPU = torch.device("cpu")


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


class Branchy(nn.Module):
    """Python control flow on the input's values: a trace would freeze one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x).mean((2, 3))
        return y * 2 if bool(x.mean() > 0) else y - 5


def batch(n: int, seed: int = 0) -> Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def graph_entry(forward: FastForward, x: Tensor) -> _Traced:
    return fastpath._GRAPHS[forward.module()][(tuple(x.shape[1:]), x.dtype)]


def test_traced_copy_equals_the_model_and_is_used() -> None:
    net, x = conv_net(), batch(4)
    forward = FastForward(net, CPU)
    with torch.no_grad():
        expected = net(x)
        first, second, smaller = forward(x), forward(x), forward(x[:3])
    for got in (first, second):
        assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(smaller, expected[:3], atol=1e-5)
    entry = graph_entry(forward, x)
    assert entry.graph is not None
    assert entry.checked == {4: True, 3: True}


def test_data_dependent_control_flow_is_not_traced() -> None:
    net = Branchy().eval()
    forward = FastForward(net, CPU)
    positive, negative = batch(2).abs(), -batch(2).abs()
    with torch.no_grad():
        assert torch.allclose(forward(positive), net(positive), atol=1e-6)
        assert torch.allclose(forward(negative), net(negative), atol=1e-6)
    assert graph_entry(forward, positive).graph is None


def test_a_graph_that_differs_at_some_batch_size_is_not_used_there() -> None:
    net, x = conv_net(), batch(2)

    def wrong_at_two(b: Tensor) -> Tensor:
        return net(b) + (1.0 if b.shape[0] == 2 else 0.0)

    entry = _Traced(wrong_at_two)
    with torch.no_grad():
        assert torch.allclose(entry(net, x), net(x))
        assert torch.allclose(entry(net, x), net(x))  # second call: eager again, not the graph
        assert torch.allclose(entry(net, x[:1]), net(x[:1]))
    assert entry.checked == {2: False, 1: True}


def test_no_side_effects_and_the_cache_follows_parameter_changes() -> None:
    net, x = conv_net().train(), batch(2)
    flags = [p.requires_grad for p in net.parameters()]
    forward = FastForward(net, CPU)
    with torch.no_grad():
        before = forward(x)
        net.eval()
        assert torch.allclose(before, net(x), atol=1e-5)  # the copy ran in eval mode
        net.train()
        net[-1].bias.add_(1.0)  # in place: the cached copy must be rebuilt
        after = forward(x)
    assert torch.allclose(after, before + 1.0, atol=1e-5)
    assert net.training and all(m.training for m in net.modules())
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())
    assert not net._forward_hooks and not net[0]._forward_hooks


def test_bfloat16_is_close_but_opt_in() -> None:
    net, x = conv_net(), batch(4)
    with torch.no_grad():
        exact = net(x)
        approx = FastForward(net, CPU, precision="bfloat16")(x).float()
    assert torch.allclose(approx, exact, atol=0.05 * float(exact.abs().max()))
    assert not torch.equal(approx, exact)


def test_bad_precision_names_the_choices() -> None:
    with pytest.raises(UsageError, match="bfloat16"):
        FastForward(conv_net(), CPU, precision="half")
    with pytest.raises(UsageError, match="CUDA"):
        FastForward(conv_net(), CPU, precision="float16")
