"""Loading messages and sources (issue 15, item 13; issue 16, items 2, 3 and 11): empty files,
folders that are not models, whole pickled models, offline timm weights, binary class names."""

from __future__ import annotations

import logging
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from camscope.errors import ModelLoadError
from camscope.models import ModelSpec, load_model
from camscope.models import hub as model_hub

TIMM_NAME = "test_efficientnet"  # timm's tiny test network; weights tag r160_in1k on the Hub


def small_model(outputs: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, outputs)
    )


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    hf_cache = tmp_path / "hf"
    hf_cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))
    return hf_cache


def test_an_empty_file_is_reported_as_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(ModelLoadError, match=r"is empty \(0 bytes\)"):
        load_model("resnet18", weights=empty, pretrained=False)
    with pytest.raises(ModelLoadError, match=r"is empty \(0 bytes\)"):
        load_model(str(empty))


def test_a_folder_that_is_not_a_model_says_what_it_lacks(tmp_path: Path) -> None:
    folder = tmp_path / "my_model"
    folder.mkdir()
    torch.save(small_model().state_dict(), folder / "weights.pt")
    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder), hints="cli")
    message = str(info.value)
    assert "has no config.json and no weights" in message
    assert "--model ARCH --weights" in message and "weights.pt" in message
    assert "close names" not in message
    (folder / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(ModelLoadError, match=r"has no weights \(model\.safetensors"):
        load_model(str(folder))


def test_a_folder_named_like_a_model_does_not_shadow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "resnet18").mkdir()  # e.g. an earlier run's --out folder
    monkeypatch.chdir(tmp_path)
    model, spec = load_model("resnet18", pretrained=False)
    assert spec.name == "resnet18" and type(model).__name__ == "ResNet"


def test_a_whole_pickled_model_file_needs_trust(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = small_model()
    path = tmp_path / "whole_model.pt"
    torch.save(model, path)
    with pytest.raises(ModelLoadError, match=r"pass trust_checkpoint=True"):
        load_model(str(path))
    with pytest.raises(ModelLoadError, match=r"pass --trust-checkpoint"):
        load_model(str(path), hints="cli")
    with caplog.at_level(logging.WARNING):
        loaded, spec = load_model(str(path), trust_checkpoint=True)
    assert "unpickling trusted checkpoint" in caplog.text  # the checkpoints' warning
    assert spec.name == "whole_model" and not loaded.training
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    weights_only = tmp_path / "state.pt"
    torch.save(model.state_dict(), weights_only)
    with pytest.raises(ModelLoadError, match=r"holds weights \(a state dict\).*--model ARCH"):
        load_model(str(weights_only), hints="cli")


def test_offline_timm_fails_fast_with_the_flags(
    empty_caches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import timm

    real = timm.create_model

    def create(name: str, pretrained: bool = False, **kw: Any) -> nn.Module:
        if pretrained:
            raise AssertionError("the Hub download was tried (it retries for ~50 s offline)")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", create)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    began = time.perf_counter()
    with pytest.raises(ModelLoadError) as python:
        load_model(TIMM_NAME)
    with pytest.raises(ModelLoadError) as cli:
        load_model(TIMM_NAME, hints="cli")
    assert time.perf_counter() - began < 10
    assert "not in the local cache" in str(python.value)
    assert "weights=FILE" in str(python.value) and "pretrained=False" in str(python.value)
    assert "--weights FILE" in str(cli.value) and "--random-init" in str(cli.value)


def test_offline_timm_probe_opens_one_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []

    def unreachable(address: tuple[str, int], timeout: float) -> Any:
        calls.append(address)
        raise OSError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    assert not model_hub.hub_reachable("https://huggingface.co")
    assert calls == [("huggingface.co", 443)]


def test_cached_timm_weights_load_without_network(empty_caches: Path, no_network: None) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    reference = timm.create_model(TIMM_NAME, pretrained=False)
    snapshot = empty_caches / "models--timm--test_efficientnet.r160_in1k" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    save_file(
        {k: v.contiguous() for k, v in reference.state_dict().items()},
        snapshot / "model.safetensors",
    )
    model, spec = load_model(TIMM_NAME)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert spec.input_size == (160, 160)


FACTORIES = textwrap.dedent(
    """
    import torch
    from torch import nn
    from camscope.models import ModelSpec

    def head(outputs):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4, outputs),
        )

    def binary():
        return head(1).train()

    def named_binary():
        return head(1), ModelSpec("lesions", class_names=["benign", "malignant"])
    """
)


def test_binary_class_names_and_the_factory_mode(tmp_path: Path) -> None:
    source = tmp_path / "camscope_binary_factories.py"
    source.write_text(FACTORIES)
    model, spec = load_model(f"{source}:binary")
    assert spec.class_names == ["negative", "positive"] and not model.training
    model, _ = load_model(f"{source}:binary", keep_mode=True)  # --as-is keeps the factory's mode
    assert model.training
    _, spec = load_model(f"{source}:named_binary")
    assert spec.class_names == ["benign", "malignant"]
    assert isinstance(spec, ModelSpec) and spec.label(1) == "malignant"
