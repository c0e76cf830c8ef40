"""The contract every registered method must keep (parametrised over ``list_methods()``).

Shapes, range, batching, dtypes, memory formats, devices, and no side effects on the model:
hooks, train/eval flags, ``requires_grad``, ``.grad`` and batch-norm statistics are as before.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from nets import InplaceReluNet, SmallNet, assert_unchanged, hook_counts, model_state
from torch import Tensor, nn

from camscope import explain, get_method, list_methods
from camscope.errors import TargetError, UnsupportedModelError, UsageError

# the methods for any classifier; the transformer-only ones keep this contract on a small ViT
# (tests/methods/test_vit_contract.py)
METHODS = [m for m in list_methods() if get_method(m).models == "any"]
TARGETS = [3, 7]


def check_maps(maps: Tensor, shape: tuple[int, ...]) -> None:
    assert maps.shape == shape
    assert maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0


# --- a random-init torchvision ResNet-18 ------------------------------------------------------


@functools.cache
def forward_passes(method: str) -> int:
    """Images the classifier sees in one explain() of ``method`` on the small network (with
    ``optimize=False`` the perturbation passes run the model's own modules, so they are counted)."""
    net = small()
    calls = []
    handle = net.fc.register_forward_hook(lambda _m, inputs, _o: calls.append(len(inputs[0])))
    try:
        explain(net, small_input(1), method, "features", 0, method_options={"optimize": False})
    finally:
        handle.remove()
    return sum(calls)


def one_pass_methods() -> list[str]:
    """Methods that need the shared pass (plus the guided one) only; the others run a pass per
    channel or noise sample, which is too slow for ResNet-18's 512-channel layer4 in unit tests."""
    return [m for m in METHODS if forward_passes(m) <= 2]


# many-pass methods run on layer1 (64 channels) of a 32 px input with few samples/channels
MANY_PASS_OPTIONS = {"num_samples": 2, "num_channels": 8}


def run_contract_cases(model: nn.Module, x: Tensor, methods: list[str], **kw: Any) -> dict:
    batch = explain(model, x, methods, targets=TARGETS, **kw)
    singles = [explain(model, x[i : i + 1], methods, targets=[TARGETS[i]], **kw) for i in range(2)]
    topk = explain(model, x, methods, targets="topk:3", **kw)
    return {"batch": batch, "singles": singles, "topk": topk}


@pytest.fixture(scope="module")
def resnet_runs(resnet18: nn.Module, image_pair: Tensor) -> dict[str, object]:
    # every one-pass method in a single call per case, at the automatic layer (layer4, 2 x 2)
    return run_contract_cases(resnet18, image_pair, one_pass_methods())


@pytest.mark.parametrize("method", METHODS)
def test_resnet_shapes_range_and_batching(method: str, resnet_runs: dict, resnet18) -> None:
    if method in resnet_runs["batch"].maps:
        runs, size = resnet_runs, 64
        assert runs["batch"].layer == "layer4"
    else:
        x = F.interpolate(resnet_runs["batch"].maps["gradcam"][:, None].repeat(1, 3, 1, 1), 32)
        runs, size = (
            run_contract_cases(
                resnet18, x - 0.5, [method], layer="layer1", method_options=MANY_PASS_OPTIONS
            ),
            32,
        )
    batch, singles, topk = runs["batch"], runs["singles"], runs["topk"]
    check_maps(batch.maps[method], (2, size, size))
    check_maps(topk.maps[method], (2, 3, size, size))
    assert topk.targets.shape == (2, 3)
    assert batch.targets.tolist() == TARGETS
    assert torch.isfinite(batch.raw[method]).all()
    # a batch of two gives the maps of two single calls
    for i, single in enumerate(singles):
        torch.testing.assert_close(single.maps[method][0], batch.maps[method][i], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            single.raw[method][0], batch.raw[method][i], atol=1e-5, rtol=1e-4
        )
    assert hook_counts(resnet18) == {}
    assert not any(m.training for m in resnet18.modules())


# --- a small network: dtypes, formats, side effects --------------------------------------------


def small(seed: int = 0, classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    net = SmallNet(classes)
    # non-trivial batch-norm statistics, so that train and eval differ
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return net.eval()


def small_input(batch: int = 2, size: int = 16) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("method", METHODS)
def test_float64_model_gives_float32_maps(method: str) -> None:
    check_other_dtype(method, torch.float64)


@pytest.mark.parametrize("method", METHODS)
def test_bfloat16_model_gives_float32_maps(method: str) -> None:
    check_other_dtype(method, torch.bfloat16)


# Recipro-CAM's map is the target's probability when the layers after the target see one
# position alone: on this random network those probabilities differ only in the fourth digit
# from position to position (0.2642 vs 0.2643), below what bfloat16 logits resolve (2-3 digits),
# so its bfloat16 map only resembles the float32 one (measured correlation 0.76).
BFLOAT16_COARSE = {"reciprocam"}


def check_other_dtype(method: str, dtype: torch.dtype) -> None:
    net, x = small(), small_input()
    reference = explain(net, x, method, layer="features", targets=[1, 2]).maps[method]
    res = explain(net.to(dtype), x.to(dtype), method, layer="features", targets=[1, 2])
    check_maps(res.maps[method], (2, 16, 16))
    if dtype == torch.float64:
        torch.testing.assert_close(res.maps[method], reference, atol=1e-5, rtol=0)
    elif method in BFLOAT16_COARSE:
        for got, want in zip(res.maps[method].flatten(1), reference.flatten(1)):
            assert float(torch.corrcoef(torch.stack([got, want]))[0, 1]) > 0.5
    else:  # bfloat16 keeps ~3 significant digits; the maps must still agree roughly
        assert float((res.maps[method] - reference).abs().mean()) < 0.05


@pytest.mark.parametrize("method", METHODS)
def test_channels_last_and_device(method: str) -> None:
    net, x = small(), small_input()
    reference = explain(net, x, method, layer="features", targets=[0, 4])
    x_cl = x.to(memory_format=torch.channels_last)
    res = explain(net.to(memory_format=torch.channels_last), x_cl, method, "features", [0, 4])
    torch.testing.assert_close(res.maps[method], reference.maps[method], atol=1e-5, rtol=0)
    assert res.maps[method].device == x.device
    assert res.raw[method].device == x.device


def _mixed_state(net: nn.Module) -> dict[str, object]:
    """Mixed train/eval flags, frozen stem, an existing .grad on fc.weight, None elsewhere."""
    net.train()
    net.stem[1].eval()  # one BN in eval, one in train
    net.drop.eval()
    for p in net.stem.parameters():
        p.requires_grad_(False)
    net.fc.weight.grad = torch.full_like(net.fc.weight, 0.25)
    return model_state(net)


@pytest.mark.parametrize("method", METHODS)
def test_no_side_effects_after_success(method: str) -> None:
    net = small()
    before = _mixed_state(net)
    res = explain(net, small_input(), method, layer="features", targets=[1, 3])
    check_maps(res.maps[method], (2, 16, 16))
    assert_unchanged(net, before)


@pytest.mark.parametrize("method", METHODS)
def test_no_side_effects_after_an_error(method: str) -> None:
    net = small()
    before = _mixed_state(net)
    with pytest.raises(TargetError, match="out of range"):
        explain(net, small_input(), method, layer="features", targets=[1, 99])
    assert_unchanged(net, before)


class Exploding(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("boom in the head")


def test_no_side_effects_when_the_model_raises() -> None:
    net = small()
    before = _mixed_state(net)
    net.pool = Exploding()  # raises after the chosen layer ran (its hook is active)
    before["modes"]["pool"] = True
    with pytest.raises(RuntimeError, match="boom"):
        explain(net, small_input(), ["gradcam", "guided-backprop"], layer="features", targets=1)
    assert_unchanged(net, before)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("method", METHODS)
def test_works_inside_no_grad(method: str) -> None:
    net, x = small(), small_input()
    reference = explain(net, x, method, layer="features", targets=[2, 2]).maps[method]
    with torch.no_grad():
        res = explain(net, x, method, layer="features", targets=[2, 2])
        assert not torch.is_grad_enabled()  # the caller's mode is restored
    torch.testing.assert_close(res.maps[method], reference, atol=1e-6, rtol=0)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("method", METHODS)
def test_inference_mode_is_a_clear_error(method: str) -> None:
    net = small()
    with torch.inference_mode(), pytest.raises(UsageError, match=r"inference_mode.*no_grad"):
        explain(net, small_input(), method, layer="features")
    assert hook_counts(net) == {}


@pytest.mark.parametrize("method", METHODS)
def test_inplace_relu_after_the_layer(method: str) -> None:
    # DenseNet style: forward applies F.relu(features, inplace=True) to the chosen layer's output.
    # The result must equal that of the same network with an out-of-place ReLU.
    torch.manual_seed(3)
    inplace = InplaceReluNet(inplace=True).eval()
    plain = InplaceReluNet(inplace=False).eval()
    plain.load_state_dict(inplace.state_dict())
    x = small_input()
    if method == "cam":
        # the chosen layer is before the ReLU, so CAM's premise fails, with a clear error
        for net in (inplace, plain):
            with pytest.raises(UnsupportedModelError, match="global average pooling"):
                explain(net, x, method, layer="features", targets=[0, 1])
        return
    got = explain(inplace, x, method, layer="features", targets=[0, 1])
    want = explain(plain, x, method, layer="features", targets=[0, 1])
    torch.testing.assert_close(got.raw[method], want.raw[method], atol=1e-6, rtol=0)
    torch.testing.assert_close(got.maps[method], want.maps[method], atol=1e-6, rtol=0)
    assert hook_counts(inplace) == {}


def test_inplace_relu_module_tap_keeps_pre_relu_values() -> None:
    # Grad-CAM from an explicit hook-free computation on the out-of-place twin: activations of
    # `features` include negative values that the in-place ReLU would otherwise overwrite.
    torch.manual_seed(3)
    net = InplaceReluNet(inplace=True).eval()
    x = small_input()
    features = net.features(x).detach()
    assert float(features.min()) < 0
    res = explain(net, x, "hirescam", layer="features", targets=[0, 0])
    # d score / d features = fc.weight[0] / (h w) * [features > 0]
    h, w = features.shape[-2:]
    grad = net.fc.weight[0].detach()[None, :, None, None] / (h * w) * (features > 0)
    torch.testing.assert_close(res.raw["hirescam"], (grad * features).sum(1), atol=1e-6, rtol=0)
