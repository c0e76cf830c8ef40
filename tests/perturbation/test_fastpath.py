"""The fast copy for gradient-free passes: same function, traced only when faithful, no side
effects, cache invalidation, reduced precision as an opt-in."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

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


# --- bounded caches and stale weights (issue 15, items 2 and 3) -------------------------------


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


@pytest.fixture()
def fresh_caches() -> Iterator[None]:
    fastpath.clear_caches()
    yield
    fastpath.set_cache_limits(fastpath.MAX_GRAPHS, fastpath.MAX_GRAPH_BYTES)
    fastpath.clear_caches()


def test_graph_cache_is_bounded_by_count_and_bytes(fresh_caches: None) -> None:
    net = conv_net()
    forward = FastForward(net, CPU)
    graphs = []
    with torch.no_grad():
        for side in range(8, 20):  # 12 input shapes, one traced graph each
            x = torch.randn(1, 3, side, side)
            forward(x)
            graphs.append(weakref.ref(graph_entry(forward, x)))
    info = fastpath.cache_info()
    assert info["graphs"] == fastpath.MAX_GRAPHS == 8
    assert sum(ref() is not None for ref in graphs) == 8  # the 4 oldest were freed
    assert all(ref() is not None for ref in graphs[-8:])
    per_graph = info["graph_bytes"] // 8
    assert per_graph == sum(
        t.numel() * t.element_size() for t in forward.module().state_dict().values()
    )
    fastpath.set_cache_limits(max_bytes=int(2.5 * per_graph))
    assert fastpath.cache_info()["graphs"] == 2
    assert sum(ref() is not None for ref in graphs) == 2
    with torch.no_grad():  # the most recently used graph survives the next eviction
        forward(torch.randn(1, 3, 19, 19))
        forward(torch.randn(1, 3, 30, 30))
    assert graphs[-1]() is not None and graphs[-2]() is None


def test_clear_caches_frees_the_graphs_and_gives_memory_back(fresh_caches: None) -> None:
    net = conv_net()
    forward = FastForward(net, CPU)
    with torch.no_grad():
        forward(batch(2))
    fastpath.clear_caches()
    before = rss_mib()
    with torch.no_grad():  # growing inputs leave freed heap pages behind (glibc keeps them)
        for side in range(64, 320, 32):
            forward(torch.randn(4, 3, side, side))
    grown = rss_mib() - before
    assert grown > 20, grown  # the premise of the test
    copy_ref = weakref.ref(forward.module())
    fastpath.clear_caches()
    assert fastpath.cache_info() == {"copies": 0, "graphs": 0, "graph_bytes": 0}
    assert copy_ref() is None
    assert rss_mib() - before < 0.5 * grown


def test_edits_through_data_reach_the_fast_copy() -> None:
    net, x = conv_net(), batch(2)
    forward = FastForward(net, CPU)
    with torch.no_grad():
        forward(x)
        net[0].weight.data.mul_(0.5)  # .data: the version counter does not move
        assert torch.allclose(forward(x), net(x), atol=1e-5)  # the same instance sees it
        net[3].weight.data[5, 0, 1, 2] += 3.0  # one value, not among the sampled ones
        fresh = FastForward(net, CPU)  # a new explain call / evaluation run: full checksum
        assert torch.allclose(fresh(x), net(x), atol=1e-5)
        net[1].running_var.data.fill_(4.0)  # buffers too
        assert torch.allclose(forward(x), net(x), atol=1e-5)


def test_scorecam_and_a_metric_forward_use_weights_edited_in_place() -> None:
    from nets import SmallNet

    from camscope import explain

    torch.manual_seed(0)
    net, x = SmallNet().eval(), torch.randn(1, 3, 16, 16)
    metric_forward = FastForward(net, CPU)  # like evaluate's forward: one instance per run
    with torch.no_grad():
        metric_forward(x)
    explain(net, x, "scorecam", layer="features", targets=0)
    with torch.no_grad():
        for p in net.parameters():
            p.data.mul_(-1.5)
    got = explain(net, x, "scorecam", layer="features", targets=0)
    slow = explain(
        net, x, "scorecam", layer="features", targets=0, method_options={"optimize": False}
    )
    torch.testing.assert_close(got.maps["scorecam"], slow.maps["scorecam"], atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(metric_forward(x), net(x), atol=1e-5, rtol=1e-5)
