"""Fine-tuning starts: never a download; tensors that fit are loaded, the rest are listed."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from camscope.errors import UsageError
from camscope.models.gapnet import GapNet
from camscope.training import pretrained


def test_timm_weights_come_from_the_local_cache_only(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(pretrained, "local_timm_weights", lambda name: None)
    with pytest.raises(UsageError, match="never downloads"):
        pretrained.timm_cache_file("resnet18")
    cached = tmp_path / "model.safetensors"
    monkeypatch.setattr(pretrained, "local_timm_weights", lambda name: str(cached))
    assert pretrained.timm_cache_file("resnet18") == str(cached)
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
