"""Recipro-CAM: values worked out by hand on GapNet, and a plain loop of full passes.

No installable peer implements Recipro-CAM for PyTorch CNNs, so the reference is a loop written
here: for every position, a forward hook replaces the layer output with the copy that keeps that
position alone, the whole model runs, and the target's softmax probability is the map's value.
"""

from __future__ import annotations

import math

import pytest
import torch
from nets import A0, A1, GapNet, SmallNet, ramp
from torch import Tensor, nn

from camscope import explain
from camscope.methods import estimate_passes


def approx(value: float) -> object:
    return pytest.approx(value, abs=1e-6)


def softmax_of(logits: list[float], c: int) -> float:
    e = [math.exp(v) for v in logits]
    return e[c] / sum(e)


@pytest.mark.reference("reciprocam")
def test_gap_net_by_hand() -> None:
    # Keeping position (i, j) alone, the pooled vector is (A0[i][j], A1[i][j]) / 9 and the logits
    # are W @ pooled + b with W = [[1, -1], [-1, 2], [0.5, 0.5]], b = [0, 0.5, -1] (nets.py).
    # Position (0, 0): A = (0, 11): logits (-11/9, 22/9 + 1/2, 11/18 - 1).
    # Position (2, 2): A = (15, 0): logits (15/9, -15/9 + 1/2, 15/18 - 1).
    res = explain(GapNet(), ramp(), "reciprocam", layer="relu", targets=2)
    raw = res.raw["reciprocam"][0]
    assert float(raw[0, 0]) == approx(softmax_of([-11 / 9, 22 / 9 + 0.5, 11 / 18 - 1], 2))
    assert float(raw[2, 2]) == approx(softmax_of([15 / 9, -15 / 9 + 0.5, 15 / 18 - 1], 2))
    for i in range(3):
        for j in range(3):
            a0, a1 = A0[i][j] / 9, A1[i][j] / 9
            logits = [a0 - a1, -a0 + 2 * a1 + 0.5, 0.5 * a0 + 0.5 * a1 - 1]
            assert float(raw[i, j]) == approx(softmax_of(logits, 2)), (i, j)


def loop_reference(model: nn.Module, x: Tensor, layer: str, classes: list[int]) -> Tensor:
    """``(B, h, w)``: one full forward per image and position, the layer output replaced."""
    module = dict(model.named_modules())[layer]
    maps = []
    for b, c in enumerate(classes):
        x1 = x[b : b + 1]
        seen: dict[str, Tensor] = {}
        handle = module.register_forward_hook(lambda _m, _i, o, s=seen: s.update(a=o))
        with torch.no_grad():
            model(x1)
        handle.remove()
        act = seen["a"]
        h, w = act.shape[-2:]
        values = torch.empty(h, w)
        for i in range(h):
            for j in range(w):
                kept = torch.zeros_like(act)
                kept[..., i, j] = act[..., i, j]
                handle = module.register_forward_hook(lambda _m, _i, _o, k=kept: k)
                with torch.no_grad():
                    values[i, j] = model(x1).softmax(1)[0, c]
                handle.remove()
        maps.append(values)
    return torch.stack(maps)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    net = SmallNet(classes=5)
    with torch.no_grad():
        net.fc.weight.mul_(20.0)  # spread the probabilities like a trained net's
    return net.eval()


def test_equals_a_loop_of_full_passes() -> None:
    net = small_net()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    res = explain(
        net, x, "reciprocam", layer="features", targets=[1, 3], method_options={"batch_size": 5}
    )
    torch.testing.assert_close(
        res.raw["reciprocam"], loop_reference(net, x, "features", [1, 3]), atol=1e-5, rtol=0
    )


class SkipHead(nn.Module):
    """The head reads the stem next to the layer (torch.cat): the tail-only path cannot replay
    that, so the passes fall back to full forwards."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(10, 3)

    def forward(self, x: Tensor) -> Tensor:
        s = self.stem(x)
        a = self.stage(s)
        return self.head(torch.cat([a.mean((2, 3)), s.mean((2, 3))], 1)) * 10


def test_falls_back_to_full_passes_when_the_tail_reads_the_prefix() -> None:
    net = SkipHead().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    res = explain(net, x, "reciprocam", layer="stage", targets=[2])
    torch.testing.assert_close(
        res.raw["reciprocam"], loop_reference(net, x, "stage", [2]), atol=1e-5, rtol=0
    )


def test_runs_only_the_tail_and_reports_one_pass_per_position() -> None:
    net = small_net()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    calls: list[int] = []
    handle = net.stem[0].register_forward_hook(lambda _m, i, _o: calls.append(len(i[0])))
    explain(net, x, "reciprocam", layer="features", targets=[0])
    handle.remove()
    # the engine's forward and one recording pass; the 8 x 8 positions skip the stem
    assert calls == [1, 1]
    assert estimate_passes(net, x, ["reciprocam"], "features") == {"reciprocam": 8 * 8 + 1}
