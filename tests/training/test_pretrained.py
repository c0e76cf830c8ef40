"""Fine-tuning starts: never a download; tensors that fit are loaded, the rest are listed."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from camscope.errors import UsageError
from camscope.models.architectures import build_classifier
from camscope.models.gapnet import GapNet
from camscope.training import pretrained

TIMM_NAME = "test_efficientnet"  # weights: timm/test_efficientnet.r160_in1k on the Hub
URL_NAME = "gcvit_xxtiny"  # weights only at a URL (torch hub's checkpoints folder)


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Empty Hugging Face and torch hub caches under ``tmp_path``, and no network at all."""
    from huggingface_hub import constants

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    hf_cache = tmp_path / "hf" / "hub"
    hf_cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))  # read once, at import
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch.hub.get_dir reads it
    return hf_cache, tmp_path / "torch" / "hub" / "checkpoints"


def test_timm_weights_come_from_the_local_cache_only(caches: tuple[Path, Path]) -> None:
    """The real lookup (camscope.models.hub) over caches laid out on disk as the Hub and torch
    hub write them: nothing there is refused without a download; a cached file is found and is
    what the built model holds."""
    import timm

    hf_cache, checkpoints = caches
    for name in (TIMM_NAME, URL_NAME):
        with pytest.raises(UsageError, match="never downloads"):
            pretrained.timm_cache_file(name)
    torch.manual_seed(3)
    reference = timm.create_model(TIMM_NAME, pretrained=False)
    repo = hf_cache / "models--timm--test_efficientnet.r160_in1k"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    file = repo / "snapshots" / "abc123" / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(file))
    found = pretrained.timm_cache_file(TIMM_NAME)
    assert Path(found) == file
    torch.manual_seed(4)
    built = build_classifier(TIMM_NAME, 5, 160, stem="imagenet", timm_weights_file=found).model
    torch.testing.assert_close(built.conv_stem.weight, reference.conv_stem.weight)
    checkpoints.mkdir(parents=True)
    url_file = checkpoints / "gcvit_xxtiny_224_nvidia-d1d86009.pth"
    url_file.write_bytes(b"weights")
    assert Path(pretrained.timm_cache_file(URL_NAME)) == url_file
    with pytest.raises(UsageError, match="no pretrained weights"):
        pretrained.timm_cache_file("efficientnetv2_s")  # timm has none for it


def test_matching_tensors_load_and_a_new_head_stays_random(tmp_path) -> None:
    torch.manual_seed(0)
    source = GapNet(num_classes=4, width=6, depth=1)
    file = tmp_path / "weights.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(file))
    torch.manual_seed(1)
    target = GapNet(num_classes=7, width=6, depth=1)  # another class count: another head
    head = target.fc.weight.clone()
    report = pretrained.load_matching(target, str(file))
    assert report["kept_random"] == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(target.features[0].weight, source.features[0].weight)
    assert torch.equal(target.fc.weight, head)
    with pytest.raises(UsageError, match="another architecture"):
        pretrained.load_matching(GapNet(num_classes=4, width=9, depth=2), str(file))
    with pytest.raises(UsageError, match="no such file"):
        pretrained.load_matching(target, str(tmp_path / "missing.pt"))
