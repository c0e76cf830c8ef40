"""Layer resolution: names, modules, "auto", "first"/"middle"/"last"/"conv:N", list_layers."""

from __future__ import annotations

import pytest
import torch
from nets import SmallNet, hook_counts
from torch import Tensor, nn

from camscope import explain, list_layers
from camscope.core.layers import auto_layer, resolve_layers
from camscope.errors import LayerError


class ThreeConvs(nn.Module):
    """Three convolutions executed in the order c, a, b (not the registration order a, b, c)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.b = nn.Conv2d(6, 8, 3, padding=1)
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        y = self.b(self.act(self.a(self.act(self.c(x)))))
        return self.fc(y.mean(dim=(2, 3)))


X = torch.randn(1, 3, 16, 16)


def names(model: nn.Module, spec) -> list[str]:
    return [n for n, _ in resolve_layers(model, spec, X)]


def test_names_modules_and_lists() -> None:
    net = SmallNet()
    assert names(net, "features") == ["features"]
    assert names(net, " features.0 ") == ["features.0"]
    assert names(net, net.stem[2]) == ["stem.2"]
    assert names(net, ["stem", net.features, "stem"]) == ["stem", "features"]
    with pytest.raises(LayerError, match="not part of the model"):
        resolve_layers(net, nn.Conv2d(1, 1, 1), X)
    with pytest.raises(LayerError, match="empty"):
        resolve_layers(net, [], X)


def test_unknown_name_lists_close_names() -> None:
    with pytest.raises(LayerError, match=r"no layer named 'featurs'.*closest: 'features'"):
        resolve_layers(SmallNet(), "featurs", X)


def test_conv_positions_follow_execution_order() -> None:
    net = ThreeConvs()
    assert names(net, "first") == ["c"]
    assert names(net, "middle") == ["a"]  # index 3 // 2 = 1
    assert names(net, "last") == ["b"]
    assert names(net, "conv:0") == ["c"]
    assert names(net, "conv:2") == ["b"]
    assert names(net, "conv:-1") == ["b"]
    assert names(net, "conv:-3") == ["c"]
    for bad in ("conv:3", "conv:-4", "conv:x"):
        with pytest.raises(LayerError, match=r"has 3 conv layers, use conv:0 .. conv:2"):
            resolve_layers(net, bad, X)


def test_list_layers_shapes_and_strides() -> None:
    infos = list_layers(ThreeConvs(), X)
    table = {i.name: (i.kind, i.shape, i.stride, i.conv_index) for i in infos}
    assert [i.name for i in infos] == ["c", "act", "a", "b"]  # act is shared: listed once
    assert table["c"] == ("Conv2d", (4, 16, 16), 1.0, 0)
    assert table["act"] == ("ReLU", (4, 16, 16), 1.0, None)
    assert table["a"] == ("Conv2d", (6, 8, 8), 2.0, 1)
    assert table["b"] == ("Conv2d", (8, 8, 8), 2.0, 2)
    assert [i.index for i in infos] == [0, 1, 2, 3]


class Counter(nn.Module):
    """Counts forward calls of a wrapped model without hooks."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.inner(x)


def test_auto_dry_forward_on_torchvision_and_cache() -> None:
    import torchvision

    torch.manual_seed(0)
    net = Counter(torchvision.models.resnet18(weights=None, num_classes=4)).eval()
    x = torch.randn(1, 3, 64, 64)
    assert auto_layer(net, x) == "inner.layer4"  # the outermost module of the last stage (2x2)
    assert net.calls == 1
    assert auto_layer(net, x) == "inner.layer4"
    assert net.calls == 1  # cached: no second dry forward
    res = explain(net, x, "gradcam")  # "auto" by default: only the explain pass itself
    assert res.layer == "inner.layer4" and net.calls == 2
    assert hook_counts(net) == {}
    # at 32 px layer4 is 1x1; the last map wider than one pixel is chosen instead (new cache key)
    assert auto_layer(net, torch.randn(1, 3, 32, 32)) == "inner.layer3"
    assert net.calls == 3


def test_auto_uses_timm_feature_info_without_a_forward() -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False, num_classes=4).eval()
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        assert model.feature_info[-1]["module"] == "layer4"
        assert auto_layer(model, torch.randn(1, 3, 32, 32)) == "layer4"
    finally:
        handle.remove()
    assert calls == []


class Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        self.drop(self.bn(self.conv(x)))
        raise RuntimeError("forward failed")


def test_modes_and_hooks_restored_when_the_dry_run_raises() -> None:
    net = Broken()
    net.train()
    net.bn.eval()
    before = {n: m.training for n, m in net.named_modules()}
    stats = net.bn.running_mean.clone()
    with pytest.raises(RuntimeError, match="forward failed"):
        list_layers(net, X)
    with pytest.raises(RuntimeError, match="forward failed"):
        explain(net, X, "gradcam", layer="auto")
    assert {n: m.training for n, m in net.named_modules()} == before
    assert hook_counts(net) == {}
    assert torch.equal(net.bn.running_mean, stats)


def test_dry_run_is_eval_mode_and_restores_train_mode() -> None:
    net = SmallNet().train()
    seen: list[bool] = []
    handle = net.stem.register_forward_hook(lambda m, *_: seen.append(m.training))
    try:
        list_layers(net, X)
    finally:
        handle.remove()
    assert seen == [False]
    assert all(m.training for m in net.modules())


def test_no_spatial_layer_is_a_clear_error() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    with pytest.raises(LayerError, match=r"no 4-D feature map.*layer="):
        auto_layer(mlp, torch.randn(1, 3, 4, 4))
    with pytest.raises(LayerError, match="no Conv2d layer"):
        resolve_layers(mlp, "first", torch.randn(1, 3, 4, 4))
