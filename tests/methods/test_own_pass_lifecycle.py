"""The methods with passes of their own (FullGrad, DFF, Recipro-CAM, SESS, RefineCAM) leave the
model as they found it: hooks, train/eval flags, requires_grad, parameter .grad and batch-norm
statistics, after success and after an exception raised inside their own passes."""

from __future__ import annotations

import pytest
import torch
from nets import SmallNet, assert_unchanged, model_state
from torch import Tensor, nn

from camscope import explain

METHODS = ["fullgrad", "dff", "reciprocam", "sess", "refinecam"]
OPTIONS = {"num_scales": 2, "num_concepts": 2}


class FailsLater(nn.Module):
    """Identity for the first ``ok`` calls, then raises: the engine's own pass succeeds and the
    method's passes fail."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok = ok
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls > self.ok:
            raise RuntimeError("boom in a later pass")
        return x


def mixed_state(net: SmallNet) -> dict[str, object]:
    torch.manual_seed(0)
    net.train()
    net.stem[1].eval()
    for p in net.stem.parameters():
        p.requires_grad_(False)
    net.fc.weight.grad = torch.full_like(net.fc.weight, 0.25)
    return model_state(net)


def net_with(drop: nn.Module) -> SmallNet:
    torch.manual_seed(0)
    net = SmallNet(classes=5)
    net.drop = drop
    return net


def layers(method: str) -> str | list[str]:
    return ["stem", "features"] if method == "refinecam" else "features"


@pytest.mark.parametrize("method", METHODS)
def test_state_after_success(method: str) -> None:
    net = net_with(nn.Dropout(0.5))
    before = mixed_state(net)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    res = explain(net, x, method, layers(method), [1, 3], method_options=OPTIONS)
    assert res.maps[method].shape == (2, 16, 16)
    assert_unchanged(net, before)


@pytest.mark.parametrize("method", ["fullgrad", "dff", "reciprocam", "sess"])
def test_state_after_an_error_in_the_methods_own_passes(method: str) -> None:
    failing = FailsLater(ok=1)  # the engine's forward passes, the method's first pass raises
    net = net_with(failing)
    before = mixed_state(net)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with pytest.raises(RuntimeError, match="boom in a later pass"):
        explain(net, x, method, "features", [1, 3], method_options=OPTIONS, strict=True)
    assert failing.calls == 2
    assert_unchanged(net, before)
