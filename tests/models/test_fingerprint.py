"""The digest of a model's weights: equal for equal tensors whatever their device or layout,
different for any change a resume must not miss."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from camscope.models.fingerprint import bytes_digest, file_digest, weights_digest


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))


def test_equal_weights_give_equal_digests_and_any_change_another() -> None:
    net = _net()
    net(torch.zeros(1, 3, 5, 5))  # materialise the lazy layer
    same = _net()
    same(torch.zeros(1, 3, 5, 5))
    digest = weights_digest(net)
    assert digest.startswith("sha256:") and digest == weights_digest(same)
    assert digest == weights_digest(dict(net.state_dict()))  # a state dict hashes the same
    channels_last = _net()
    channels_last(torch.zeros(1, 3, 5, 5))
    assert weights_digest(channels_last.to(memory_format=torch.channels_last)) == digest
    with torch.no_grad():
        same[0].weight[0, 0, 0, 0] += 1e-6  # one value
    assert weights_digest(same) != digest
    state = dict(net.state_dict())
    assert weights_digest({**state, "1.running_mean": state["1.running_mean"] + 1}) != digest
    renamed = {("x." + k if k == "0.bias" else k): v for k, v in state.items()}
    assert weights_digest(renamed) != digest
    reshaped = {**state, "0.bias": state["0.bias"].reshape(2, 2)}
    assert weights_digest(reshaped) != digest  # the same bytes, another shape
    assert weights_digest({k: v.double() for k, v in state.items()}) != digest


def test_the_digest_of_one_tensor_is_the_sha256_of_its_bytes_under_its_header() -> None:
    value = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    inner = hashlib.sha256(value.numpy().tobytes()).digest()
    outer = hashlib.sha256(b"w\0torch.float32\0(2, 3)\0" + inner).hexdigest()
    assert weights_digest({"w": value}) == "sha256:" + outer
    assert weights_digest({"w": value.t().contiguous().t()}) == "sha256:" + outer  # strides


def test_a_file_digest_is_the_digest_of_its_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # more than one 1 MiB block
    (tmp_path / "w.bin").write_bytes(data)
    assert file_digest(tmp_path / "w.bin") == bytes_digest(data)
    assert bytes_digest(data) == "sha256:" + hashlib.sha256(data).hexdigest()
