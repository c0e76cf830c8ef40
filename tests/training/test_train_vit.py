"""camscope train builds a small-input ViT, and its run folder is a model the attention methods
explain (docs/vit.md); a run folder written before ViTs got a small patch still loads."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from camscope import explain, load_model
from camscope.training import TrainConfig, train

TRANSFORMER_METHODS = ["legrad", "attention-rollout", "transformer-attribution", "vit-reciprocam"]


def _train(out, **changes) -> None:
    config = {
        "data": "builtin:24",
        "out": str(out),
        "arch": "vit_tiny_patch16_224",
        "arch_options": {"depth": 2},
        "image_size": 32,
        "epochs": 1,
        "batch_size": 8,
        "val_split": 0.25,
        "progress": False,
        **changes,
    }
    train(TrainConfig(**config))


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vit"
    _train(out)
    return out


def test_vit_run_folder_records_the_small_patch(vit_run) -> None:
    config = json.loads((vit_run / "config.json").read_text())
    assert config["arch"] == "timm:vit_tiny_patch16_224" and config["stem"] == "cifar"
    assert "patch_embed: patch 16 -> 4 (8x8 tokens)" in config["model"]["notes"]
    assert config["cam_layer"]["layer"] == "blocks.1.norm1"
    assert config["cam_layer"]["map_size"] == [8, 8]


def test_vit_run_folder_loads_and_the_attention_methods_explain_it(vit_run) -> None:
    model, spec = load_model(str(vit_run))
    assert spec.input_size == (32, 32) and tuple(model.patch_embed.grid_size) == (8, 8)
    x = torch.randn(2, 3, 32, 32)
    res = explain(model, x, ["gradcam", "randomcam", *TRANSFORMER_METHODS], layer="blocks.1")
    for name, raw in res.raw.items():
        assert tuple(raw.shape) == (2, 8, 8), name
        assert torch.isfinite(raw).all(), name
    # class-specific methods differ between two classes; rollout does not depend on the class
    other = explain(model, x, TRANSFORMER_METHODS, targets=[1, 1], layer="blocks.1")
    again = explain(model, x, TRANSFORMER_METHODS, targets=[2, 2], layer="blocks.1")
    torch.testing.assert_close(other.raw["attention-rollout"], again.raw["attention-rollout"])
    assert not torch.allclose(other.raw["legrad"], again.raw["legrad"])
    assert not torch.allclose(
        other.raw["transformer-attribution"], again.raw["transformer-attribution"]
    )


def test_a_vit_recorded_before_the_small_patch_still_loads(tmp_path) -> None:
    """Run folders of transformers recorded stem "none" and meant the published patch."""
    out = tmp_path / "published"
    _train(out, stem="imagenet")
    config = json.loads((out / "config.json").read_text())
    assert config["stem"] == "imagenet"
    legacy = tmp_path / "legacy"
    shutil.copytree(out, legacy)
    config["stem"] = "none"
    (legacy / "config.json").write_text(json.dumps(config))
    model, _ = load_model(str(legacy))
    assert tuple(model.patch_embed.grid_size) == (2, 2)  # 16-px patches at 32 px, as trained
