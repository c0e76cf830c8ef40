"""Data-parallel training through torch DDP: two gloo processes on the CPU, started by torchrun's
launcher (``devices=2``), make the same steps as one process with the same total batch."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_data import write_image_folder

from camscope.errors import UsageError
from camscope.training import TrainConfig, train


@pytest.mark.slow
def test_two_processes_equal_one_process_with_twice_the_batch(tmp_path) -> None:
    data = write_image_folder(tmp_path / "pets", ("ant", "bee"), per_class=10)
    common = {
        "data": str(data),
        "arch": "gapnet",
        # no batch norm: its statistics are per process, the rest of the step is not
        "arch_options": {"width": 4, "depth": 1, "batch_norm": False},
        "image_size": 16,
        "epochs": 2,
        "val_split": 0.2,  # 16 training images: 2 steps of 8 = 2 x 2 steps of 4
        "augment": "none",
        "seed": 0,
        "device": "cpu",
    }
    parallel = train(TrainConfig(out=str(tmp_path / "ddp"), batch_size=4, devices=2, **common))
    single = train(TrainConfig(out=str(tmp_path / "one"), batch_size=8, **common))
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["distributed"]["world_size"] == 2
    assert parallel.status == single.status == "finished"
    a = torch.load(tmp_path / "ddp" / "last.ckpt", weights_only=True)["model"]
    b = torch.load(tmp_path / "one" / "last.ckpt", weights_only=True)["model"]
    assert not torch.equal(a["fc.weight"], torch.zeros_like(a["fc.weight"]))
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    for ra, rb in zip(parallel.history, single.history):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), key


def test_more_processes_than_gpus_is_refused_before_launching(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    settings = {"data": "builtin:8", "arch": "gapnet", "out": str(tmp_path / "run")}
    with pytest.raises(UsageError, match=r"--devices 3 needs 3 CUDA GPUs, this machine has 2"):
        train(TrainConfig(devices=3, device="cuda", **settings))
    with pytest.raises(UsageError, match=r"--devices 4 needs 4 CUDA GPUs.*--devices 2"):
        train(TrainConfig(devices=4, **settings))  # device auto -> cuda
    with pytest.raises(UsageError, match="not cuda:1"):
        train(TrainConfig(devices=2, device="cuda:1", **settings))
    assert not (tmp_path / "run").exists()  # nothing started
