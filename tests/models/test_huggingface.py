"""Hugging Face image classifiers (tiny random configs saved locally; never the hub), and the clear
refusals for TorchScript and ONNX models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nets import hf_vit_auto_layer, tiny_hf_vit
from torch import nn

import camscope
from camscope.core.unsupported import reject_unexplainable
from camscope.errors import ModelLoadError, UnsupportedModelError
from camscope.models.hf import load_hf_model, spec_from_processor_config

transformers = pytest.importorskip("transformers")  # the optional extra camscope[hf]


def _tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return tiny_hf_vit(labels=["cat", "dog", "fox"]).eval()


def test_saved_folder_loads_offline_with_its_preprocessing(tmp_path: Path) -> None:
    model = _tiny_vit()
    model.save_pretrained(tmp_path)
    processor = transformers.ViTImageProcessor(
        size={"height": 64, "width": 64},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.25, 0.5, 0.75],
        resample=3,
    )
    processor.save_pretrained(tmp_path)

    loaded, spec = load_hf_model(tmp_path)
    assert spec.input_size == (64, 64)
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.25, 0.5, 0.75)
    assert spec.interpolation == "bicubic"
    assert spec.class_names == ["cat", "dog", "fox"]
    assert spec.source == "Hugging Face image processor"
    assert not loaded.training

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits)
    res = camscope.explain(loaded, x, ["gradcam", "layercam"], layer="auto")
    assert res.layer == hf_vit_auto_layer()
    assert res.raw["gradcam"].shape == (2, 4, 4)  # 16 patch tokens, the class token dropped
    torch.testing.assert_close(res.logits, model(x).logits.detach())
    assert float(res.maps["gradcam"].std()) > 0


def test_hf_gradcam_equals_manual_token_reshape() -> None:
    model = _tiny_vit()
    x = torch.randn(1, 3, 64, 64)

    def by_hand(t: torch.Tensor) -> torch.Tensor:
        return t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[-1]).permute(0, 3, 1, 2)

    auto = camscope.explain(model, x, "gradcam", layer="auto")
    manual = camscope.explain(model, x, "gradcam", layer=auto.layer, reshape=by_hand)
    torch.testing.assert_close(auto.raw["gradcam"], manual.raw["gradcam"])


def test_processor_config_variants() -> None:
    cfg = {
        "size": {"shortest_edge": 256},
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": True,
        "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "resample": 2,
        "crop_pct": 0.875,
    }
    spec = spec_from_processor_config(cfg, "convnext")
    assert spec.input_size == (224, 224) and spec.interpolation == "bilinear"
    assert spec.crop_pct == 0.875
    spec = spec_from_processor_config({"size": 96, "do_normalize": False, "resample": 0}, "x")
    assert spec.input_size == (96, 96) and spec.interpolation == "nearest"
    assert spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0)


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        load_hf_model(tmp_path)


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_and_onnx_are_refused_with_advice(tmp_path: Path) -> None:
    scripted = torch.jit.script(_Small())
    with pytest.raises(UnsupportedModelError, match=r"TorchScript.*module:factory"):
        reject_unexplainable(scripted)
    path = tmp_path / "model.pt"
    torch.jit.save(scripted, str(path))
    with pytest.raises(UnsupportedModelError, match="TorchScript archive"):
        reject_unexplainable(path)
    with pytest.raises(UnsupportedModelError, match="ONNX"):
        reject_unexplainable(tmp_path / "model.onnx")
    reject_unexplainable(_Small())  # a plain module passes
    plain = tmp_path / "state.pt"
    torch.save(_Small().state_dict(), plain)
    reject_unexplainable(plain)  # a state dict is not TorchScript


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_explain_refuses_a_scripted_model_with_advice() -> None:
    scripted = torch.jit.script(_Small())
    with pytest.raises(UnsupportedModelError, match="TorchScript"):
        camscope.explain(scripted, torch.zeros(1, 3, 32, 32), "gradcam")
