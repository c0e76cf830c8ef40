"""The fast copy for gradient-free passes: same function, traced only when faithful, no side
effects, owned by its creator (no module-level cache), rebuilt on any change of the model's
weights (exact), reduced precision as an opt-in."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import MutableMapping, MutableSequence, MutableSet

import pytest
import torch
from torch import Tensor, nn

from camscope.errors import UsageError
from camscope.perturbation import fastpath
from camscope.perturbation.fastpath import FastForward, _Graph

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


def graph_entry(forward: FastForward, x: Tensor) -> _Graph:
    assert forward._copy is not None
    return forward._copy.graphs[(tuple(x.shape[1:]), x.dtype)]


def test_traced_copy_equals_the_model_and_is_used() -> None:
    net, x = conv_net(), batch(4)
    forward = FastForward(net, CPU)
    with torch.no_grad():
        expected = net(x)
        first, second, smaller = forward(x), forward(x), forward(x[:3])
    for got in (first, second):
        assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(first, second)  # the graph's answer from the first batch on
    assert torch.allclose(smaller, expected[:3], atol=1e-5)
    entry = graph_entry(forward, x)
    assert entry.graph is not None
    assert entry.checked == {4: True, 3: True}
    assert forward.builds == 1


def test_data_dependent_control_flow_is_not_traced() -> None:
    net = Branchy().eval()
    forward = FastForward(net, CPU)
    positive, negative = batch(2).abs(), -batch(2).abs()
    with torch.no_grad():
        assert torch.allclose(forward(positive), net(positive), atol=1e-6)
        assert torch.allclose(forward(negative), net(negative), atol=1e-6)
    assert graph_entry(forward, positive).graph is None


def test_tracing_leaves_the_warning_filters_alone() -> None:
    import warnings

    from module_writes import recorded_writes

    filters = list(warnings.filters)
    with recorded_writes(warnings) as written, torch.no_grad():
        FastForward(Branchy().eval(), CPU)(batch(2))
        FastForward(conv_net(), CPU)(batch(2))
    assert written == []
    assert warnings.filters == filters


def test_a_graph_that_differs_at_some_batch_size_is_not_used_there() -> None:
    net, x = conv_net(), batch(2)

    def wrong_at_two(b: Tensor) -> Tensor:
        return net(b) + (1.0 if b.shape[0] == 2 else 0.0)

    entry = _Graph(wrong_at_two)
    with torch.no_grad():
        assert torch.allclose(entry(net, x), net(x))
        assert torch.allclose(entry(net, x), net(x))  # second call: eager again, not the graph
        assert torch.allclose(entry(net, x[:1]), net(x[:1]))
    assert entry.checked == {2: False, 1: True}


def test_no_side_effects_and_the_copy_follows_parameter_changes() -> None:
    net, x = conv_net().train(), batch(2)
    flags = [p.requires_grad for p in net.parameters()]
    forward = FastForward(net, CPU)
    with torch.no_grad():
        before = forward(x)
        net.eval()
        assert torch.allclose(before, net(x), atol=1e-5)  # the copy ran in eval mode
        net.train()
        net[-1].bias.add_(1.0)  # in place: the copy must be rebuilt
        after = forward(x)
    assert torch.allclose(after, before + 1.0, atol=1e-5)
    assert forward.builds == 2
    assert net.training and all(m.training for m in net.modules())
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())
    assert not net._forward_hooks and not net[0]._forward_hooks


def test_the_folded_copy_made_for_cuda_keeps_its_reference() -> None:
    # On CUDA the eager copy has batch-norm folded (torch.fx); the values it is checked against
    # are the model's as copied, not the folded ones. Built here for a CPU model.
    net, x = conv_net(), batch(2)
    made = fastpath._Copy(net, torch.device("cuda"), trace=False, max_graphs=1)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in made.module.modules())
    assert made.matches(net)
    with torch.no_grad():
        assert torch.allclose(made.module(x), net(x), atol=1e-5)
        net[0].weight.data[0, 0, 0, 0] += 1.0
    assert not made.matches(net)


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


# --- ownership: no module-level state (issue 20, item 6) -------------------------------------


def test_the_module_keeps_no_cache() -> None:
    containers = (MutableMapping, MutableSequence, MutableSet)
    state = {k for k, v in vars(fastpath).items() if isinstance(v, containers) and k[:2] != "__"}
    assert state == {"_INT_VIEW", "_VALUE_READS"}  # constants only
    net, x = conv_net(), batch(2)
    one, two = FastForward(net, CPU), FastForward(net, CPU)
    with torch.no_grad():
        one(x), two(x)
    assert one.module() is not two.module()  # each owner has its own copy


def test_the_copy_and_graphs_go_with_their_owner_or_at_close() -> None:
    net, x = conv_net(), batch(2)
    forward = FastForward(net, CPU)
    with torch.no_grad():
        forward(x)
    copy_ref = weakref.ref(forward.module())
    graph_ref = weakref.ref(graph_entry(forward, x))
    forward.close()
    gc.collect()
    assert copy_ref() is None and graph_ref() is None
    with torch.no_grad():
        forward(x)  # made again on the next use
    copy_ref = weakref.ref(forward.module())
    del forward
    gc.collect()
    assert copy_ref() is None


def test_graphs_are_bounded_per_owner() -> None:
    net = conv_net()
    forward = FastForward(net, CPU, max_graphs=3)
    graphs = []
    with torch.no_grad():
        for side in range(8, 14):  # 6 input shapes, one graph each
            x = torch.randn(1, 3, side, side)
            forward(x)
            graphs.append(weakref.ref(graph_entry(forward, x)))
    assert forward._copy is not None and len(forward._copy.graphs) == 3
    gc.collect()
    assert [ref() is not None for ref in graphs] == [False] * 3 + [True] * 3
    with pytest.raises(UsageError, match="max_graphs"):
        FastForward(net, CPU, max_graphs=0)


def test_scorecam_makes_a_copy_for_the_call_and_drops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from nets import SmallNet

    from camscope import explain
    from camscope.perturbation import masked

    made: list[weakref.ref[FastForward]] = []

    class Recorded(FastForward):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(weakref.ref(self))

    monkeypatch.setattr(masked, "FastForward", Recorded)
    net, x = SmallNet().eval(), torch.randn(1, 3, 16, 16)
    explain(net, x, "scorecam", layer="features", targets=0)
    gc.collect()
    assert len(made) == 1 and made[0]() is None


# --- staleness: exact (issue 20, item 6) ------------------------------------------------------


def test_every_edit_reaches_the_copy_within_one_owner() -> None:
    net, x = conv_net(), batch(2)
    forward = FastForward(net, CPU)
    weight = net[3].weight
    with torch.no_grad():
        forward(x)
        edits = [
            lambda: net[0].weight.data.mul_(0.5),  # .data: the version counter does not move
            lambda: weight.data.__setitem__((5, 0, 1, 2), weight.data[5, 0, 1, 2] + 3.0),
            lambda: net[1].running_var.data.fill_(4.0),  # buffers too
            # values swapped: their sum, and any checksum by sum, is unchanged
            lambda: weight.data.__setitem__(([0, 1], 0, 0, 0), weight.data[[1, 0], 0, 0, 0]),
        ]
        for n, edit in enumerate(edits, start=2):
            edit()
            assert torch.allclose(forward(x), net(x), atol=1e-5)
            assert forward.builds == n
        net[2] = nn.ReLU6()  # a module without weights replaced
        assert torch.allclose(forward(x), net(x), atol=1e-5)
        assert forward.builds == len(edits) + 2
        forward(x)
    assert forward.builds == len(edits) + 2  # unchanged model: no rebuild


def test_a_use_checks_once() -> None:
    net, x = conv_net(), batch(2)
    forward = FastForward(net, CPU)
    calls = []
    real = fastpath._Copy.matches

    def counted(self: fastpath._Copy, model: nn.Module) -> bool:
        calls.append(1)
        return real(self, model)

    fastpath._Copy.matches = counted  # type: ignore[method-assign]
    try:
        with torch.no_grad(), forward.use() as run:
            for _ in range(5):
                run(x)
        with torch.no_grad():
            forward(x)
    finally:
        fastpath._Copy.matches = real  # type: ignore[method-assign]
    assert len(calls) == 1 and forward.builds == 1  # first use builds, second checks once


def test_threads_share_one_owner() -> None:
    net, x = conv_net(), batch(3)
    forward = FastForward(net, CPU)
    with torch.no_grad():
        expected = net(x)
    results: list[Tensor] = []

    def work() -> None:
        with torch.no_grad():
            results.extend(forward(x) for _ in range(5))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 15 and forward.builds == 1
    assert all(torch.allclose(r, expected, atol=1e-5) for r in results)


def test_scorecam_and_a_metric_forward_use_weights_edited_in_place() -> None:
    from nets import SmallNet

    from camscope import explain

    torch.manual_seed(0)
    net, x = SmallNet().eval(), torch.randn(1, 3, 16, 16)
    metric_forward = FastForward(net, CPU)  # like evaluate's forward: one instance per run
    shared = FastForward(net, CPU)  # a caller's copy, reused across explain calls
    opts = {"fast_model": shared}
    with torch.no_grad():
        metric_forward(x)
    explain(net, x, "scorecam", layer="features", targets=0, method_options=opts)
    explain(net, x, "scorecam", layer="features", targets=0, method_options=opts)
    assert shared.builds == 1
    with torch.no_grad():
        for p in net.parameters():
            p.data.mul_(-1.5)
    got = explain(net, x, "scorecam", layer="features", targets=0, method_options=opts)
    assert shared.builds == 2
    slow = explain(
        net, x, "scorecam", layer="features", targets=0, method_options={"optimize": False}
    )
    torch.testing.assert_close(got.maps["scorecam"], slow.maps["scorecam"], atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(metric_forward(x), net(x), atol=1e-5, rtol=1e-5)


def test_fast_model_option_is_checked() -> None:
    from nets import SmallNet

    from camscope import explain

    net, other, x = SmallNet().eval(), SmallNet().eval(), torch.randn(1, 3, 16, 16)
    for opts, message in (
        ({"fast_model": FastForward(other, CPU)}, "another model"),
        ({"fast_model": FastForward(net, CPU), "optimize": False}, "contradict"),
        ({"fast_model": FastForward(net, CPU), "precision": "bfloat16"}, "same precision"),
        ({"fast_model": "yes"}, "FastForward"),
    ):
        with pytest.raises(UsageError, match=message):
            explain(net, x, "scorecam", layer="features", targets=0, method_options=opts)


def test_a_precision_has_one_name_in_every_spelling() -> None:
    """The methods' -O precision reads names as explain(precision=...) does (core.precision)."""
    from nets import SmallNet

    from camscope import explain

    net, x = SmallNet().eval(), torch.randn(1, 3, 16, 16)
    assert FastForward(net, CPU, precision="bfloat16").precision == "bf16"
    fast = FastForward(net, CPU, precision="bf16")
    kwargs = {"layer": "features", "targets": 0}
    long = explain(
        net, x, "scorecam", **kwargs, method_options={"fast_model": fast, "precision": "bfloat16"}
    )
    short = explain(net, x, "scorecam", **kwargs, method_options={"precision": "bf16"})
    torch.testing.assert_close(long.maps["scorecam"], short.maps["scorecam"])
