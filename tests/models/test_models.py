"""camscope.models: default offline model, names, factories, checkpoints, specs, errors."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.error
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from camscope.errors import CamscopeError, ModelLoadError
from camscope.models import (
    DEFAULT_MODEL,
    ModelSpec,
    imagenet_class_names,
    load_model,
    map_state_dict_in_order,
    spec_for_model,
)
from camscope.models import default as default_model

TV_NAME = "shufflenet_v2_x0_5"  # torchvision-only (timm has no such name), 1.4 M parameters
TIMM_NAME = "test_efficientnet"  # timm's tiny test network


class NotATensor:
    """A picklable object that weights_only=True refuses."""

    def __init__(self) -> None:
        self.note = "hello"


# ---------------------------------------------------------------------------- default model


def test_default_model_offline(no_network: None) -> None:
    model, spec = load_model()
    assert not model.training
    assert spec.name == DEFAULT_MODEL
    assert spec.input_size == (224, 224)
    assert spec.interpolation == "bicubic"
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)
    assert len(spec.class_names) == 1000
    assert spec.class_names[285] == "Egyptian cat"
    # the packaged tensors really are in the model (first = stem conv, last = classifier bias)
    packaged = torch.load(default_model.weights_path(), map_location="cpu", weights_only=True)
    tensors = list(packaged.values())
    assert torch.equal(model.conv_stem.weight, tensors[0])
    assert torch.equal(model.classifier.bias, tensors[-1])


def test_default_model_random_init(no_network: None) -> None:
    model, spec = load_model(pretrained=False)
    packaged = torch.load(default_model.weights_path(), map_location="cpu", weights_only=True)
    assert not torch.equal(model.conv_stem.weight, next(iter(packaged.values())))
    assert spec.mean == (0.5, 0.5, 0.5)


def test_map_in_order_renames_by_position() -> None:
    src = OrderedDict(a=torch.zeros(2), b=torch.ones(3))
    dst = OrderedDict(x=torch.empty(2), y=torch.empty(3))
    out = map_state_dict_in_order(src, dst)
    assert list(out) == ["x", "y"]
    assert torch.equal(out["y"], torch.ones(3))


def test_map_in_order_shape_mismatch() -> None:
    src = OrderedDict(a=torch.zeros(2), b=torch.ones(4))
    dst = OrderedDict(x=torch.empty(2), y=torch.empty(3))
    with pytest.raises(ModelLoadError, match=r"entry 1 'b' has shape \[4\].*'y' has shape \[3\]"):
        map_state_dict_in_order(src, dst)
    with pytest.raises(ModelLoadError, match="has 1 tensors, the model expects 2"):
        map_state_dict_in_order(OrderedDict(a=torch.zeros(2)), dst)


def test_default_model_rejects_mismatching_package_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = torch.load(default_model.weights_path(), map_location="cpu", weights_only=True)
    broken = OrderedDict(packaged)
    first = next(iter(broken))
    broken[first] = torch.zeros(7, 3, 3, 3)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    monkeypatch.setattr(default_model, "weights_path", lambda: path)
    with pytest.raises(ModelLoadError, match=r"'conv_stem\.weight' has shape"):
        load_model()


# ---------------------------------------------------------------------------- torchvision / timm


def test_torchvision_spec_from_weights_enum_without_download(
    no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, spec = load_model(TV_NAME, pretrained=False)
    assert not model.training
    assert spec.input_size == (224, 224)
    assert spec.interpolation == "bilinear"
    assert spec.crop_pct == pytest.approx(224 / 256)
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406))
    assert len(spec.class_names) == 1000 and spec.class_names[0] == "tench"
    assert spec.source.startswith("random initialisation (preprocessing from torchvision weights")


def test_timm_spec_from_pretrained_cfg(no_network: None) -> None:
    _, spec = load_model(TIMM_NAME, pretrained=False)
    assert spec.input_size == (160, 160)  # timm's cfg for this test network
    assert spec.interpolation == "bicubic"
    assert spec.crop_pct == pytest.approx(0.95)
    # issue 21.12: random weights are not the pretrained ones the config describes
    assert spec.source == "random initialisation (preprocessing from timm pretrained_cfg)"


def test_download_failure_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    from camscope.models import hub

    def fake_create(name: str, pretrained: bool = False, **kw: Any) -> nn.Module:
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        raise AssertionError("should not get here")

    monkeypatch.setattr(timm, "create_model", fake_create)
    # not cached, and the probe got through: the download itself fails
    monkeypatch.setattr(hub, "local_timm_weights", lambda name: None)
    monkeypatch.setattr(hub, "hub_reachable", lambda url, timeout=3.0: True)
    with pytest.raises(ModelLoadError) as info:
        load_model(TIMM_NAME)
    message = str(info.value)
    assert "weights=FILE" in message and "pretrained=False" in message
    assert "couldn't connect" in message


def test_download_failure_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models as tvm

    real = tvm.get_model

    def fake_get(name: str, **kw: Any) -> nn.Module:
        if kw.get("weights") is not None:
            raise urllib.error.URLError("Name or service not known")
        return real(name, **kw)

    monkeypatch.setattr(tvm, "get_model", fake_get)
    with pytest.raises(ModelLoadError, match=r"pass weights=FILE .*or pretrained=False"):
        load_model(TV_NAME)


def test_unknown_name_lists_close_names() -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model("resnet5O")
    assert "'resnet50'" in str(info.value)
    assert isinstance(info.value, CamscopeError)


def test_detection_and_segmentation_models_load_with_their_task_spec(no_network: None) -> None:
    """Random weights for the model and its backbone: nothing is downloaded."""
    model, spec = load_model("fasterrcnn_mobilenet_v3_large_320_fpn", pretrained=False)
    assert spec.task == "detection" and spec.to_dict()["task"] == "detection"
    assert spec.input_size == (320, 320) and spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0,) * 3
    assert spec.class_names[1] == "person" and len(spec.class_names) == 91  # COCO, label = index
    assert not model.training
    model, spec = load_model("lraspp_mobilenet_v3_large", pretrained=False)
    assert spec.task == "segmentation" and spec.input_size == (520, 520)
    assert spec.class_names[15] == "person" and len(spec.class_names) == 21  # Pascal VOC
    assert "task" not in load_model("resnet18", pretrained=False)[1].to_dict()


def test_video_models_are_refused() -> None:
    with pytest.raises(ModelLoadError, match="video or optical-flow"):
        load_model("raft_small", pretrained=False)


def test_uncached_torchvision_weights_are_refused_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch.hub

    from camscope.models import hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(hub, "hub_reachable", lambda url, timeout=3.0: False)
    began = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        load_model("fasterrcnn_resnet50_fpn", hints="cli")
    assert time.perf_counter() - began < 5
    message = str(info.value)
    assert "not in the local cache" in message and "fasterrcnn_resnet50_fpn_coco" in message
    assert "--weights FILE" in message and "--random-init" in message
    cached = tmp_path / "checkpoints" / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    cached.parent.mkdir()
    cached.write_bytes(b"")
    assert hub.local_torchvision_weights(_weights("fasterrcnn_resnet50_fpn")) == str(cached)


def _weights(name: str) -> Any:
    import torchvision.models as tvm

    return tvm.get_model_weights(name).DEFAULT


# ---------------------------------------------------------------------------- weights files


def _reference(name: str = TV_NAME) -> nn.Module:
    torch.manual_seed(123)
    model, _ = load_model(name, pretrained=False)
    return model


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("wrapper", ["plain", "state_dict", "model", "module_prefix"])
def test_pt_state_dict_round_trip(tmp_path: Path, wrapper: str, no_network: None) -> None:
    ref = _reference()
    state: Any = ref.state_dict()
    if wrapper == "module_prefix":
        state = {"state_dict": {"module." + k: v for k, v in state.items()}}
    elif wrapper != "plain":
        state = {wrapper: state, "epoch": 3}
    path = tmp_path / "w.pt"
    torch.save(state, path)
    torch.manual_seed(999)
    model, spec = load_model(TV_NAME, weights=path)
    _assert_same_weights(model, ref)
    assert not model.training
    assert spec.interpolation == "bilinear"


def test_safetensors_round_trip(tmp_path: Path, no_network: None) -> None:
    from safetensors.torch import save_file

    ref = _reference(TIMM_NAME)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    torch.manual_seed(7)
    model, _ = load_model(TIMM_NAME, weights=path)
    _assert_same_weights(model, ref)


def test_missing_and_unexpected_keys_named(tmp_path: Path) -> None:
    state = _reference().state_dict()
    state.pop("fc.bias")
    state["extra.thing"] = torch.zeros(1)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError) as info:
        load_model(TV_NAME, weights=path)
    message = str(info.value)
    assert "missing keys: 'fc.bias'" in message
    assert "unexpected keys: 'extra.thing'" in message


def test_shape_mismatch_named(tmp_path: Path) -> None:
    state = _reference().state_dict()
    state["fc.bias"] = torch.zeros(10)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=r"'fc.bias' \[10\] vs \[1000\]"):
        load_model(TV_NAME, weights=path)


def test_corrupt_and_missing_weights_files(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model(TV_NAME, weights=path)
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(TV_NAME, weights=tmp_path / "nothing.pt")
    bad_st = tmp_path / "junk.safetensors"
    bad_st.write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(TV_NAME, weights=bad_st)


def test_trust_checkpoint_refusal_and_acceptance(tmp_path: Path) -> None:
    ref = _reference()
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": ref.state_dict(), "extra": NotATensor()}, path)
    with pytest.raises(ModelLoadError) as info:
        load_model(TV_NAME, weights=path)
    message = str(info.value)
    assert "trust_checkpoint=True" in message and "--trust-checkpoint" in message
    model, _ = load_model(TV_NAME, weights=path, trust_checkpoint=True)
    _assert_same_weights(model, ref)


def test_whole_pickled_module_with_trust(tmp_path: Path) -> None:
    ref = _reference()
    path = tmp_path / "whole.pt"
    torch.save(ref, path)
    with pytest.raises(ModelLoadError, match="trust_checkpoint"):
        load_model(TV_NAME, weights=path)
    model, spec = load_model(TV_NAME, weights=path, trust_checkpoint=True)
    _assert_same_weights(model, ref)
    assert not model.training
    assert len(spec.class_names) == 1000


# ---------------------------------------------------------------------------- factories

FACTORY_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))

    def broken():
        raise RuntimeError("boom")

    def not_a_model():
        return 42
    """
)


def test_module_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "camscope_test_factory_mod.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    model, spec = load_model("camscope_test_factory_mod:build")
    assert isinstance(model, nn.Sequential) and not model.training
    assert model[3].out_features == 5
    assert spec.class_names == []  # 5 outputs: not ImageNet
    assert spec.name == "camscope_test_factory_mod:build"


def test_file_factory_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "my_model.py"
    path.write_text(FACTORY_SOURCE)
    model, _ = load_model(f"{path}:build")
    assert isinstance(model, nn.Sequential)
    with pytest.raises(ModelLoadError, match="'build'"):  # close names offered
        load_model(f"{path}:buidl")
    with pytest.raises(ModelLoadError, match="boom"):
        load_model(f"{path}:broken")
    with pytest.raises(ModelLoadError, match=r"must return a torch\.nn\.Module"):
        load_model(f"{path}:not_a_model")
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(f"{tmp_path / 'absent.py'}:build")
    with pytest.raises(ModelLoadError, match="cannot import module"):
        load_model("camscope_no_such_module_xyz:build")


def test_factory_with_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "my_model.py"
    path.write_text(FACTORY_SOURCE)
    ref, _ = load_model(f"{path}:build")
    state = {k: torch.full_like(v, 0.5) for k, v in ref.state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    model, _ = load_model(f"{path}:build", weights=tmp_path / "w.pt")
    assert all(torch.all(p == 0.5) for p in model.parameters())


# ---------------------------------------------------------------------------- specs


def test_spec_for_plain_module() -> None:
    spec = spec_for_model(nn.Sequential(nn.Flatten(), nn.Linear(12, 1000)), "mine")
    assert spec.name == "mine"
    assert spec.class_names == imagenet_class_names()
    assert spec.mean == (0.485, 0.456, 0.406) and spec.input_size == (224, 224)
    assert spec_for_model(nn.Linear(3, 7)).class_names == []


def test_spec_to_dict_is_json_ready() -> None:
    spec = ModelSpec(name="m", class_names=["a", "b", "c"], crop_pct=0.9)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["num_classes"] == 3
    assert "class_names" not in data
    assert data["input_size"] == [224, 224] and data["crop_pct"] == 0.9


def test_imagenet_class_names() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) >= 998
    assert names[0] == "tench" and names[281] == "tabby" and names[999] == "toilet tissue"
