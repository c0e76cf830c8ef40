"""``camscope train`` in-process: progress output, exit codes, resume and --explain."""

from __future__ import annotations

import json
import sys

import pytest
from tiny_data import write_image_folder

from camscope.cli.main import main

TINY = ["--arch", "gapnet", "--width", "4", "--depth", "1", "--image-size", "16"]
TINY += ["--batch-size", "8", "--val-split", "0.2"]


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("data") / "pets", ("ant", "bee"), 10)


def test_train_shows_progress_then_resumes(pets, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "run"
    logged = tmp_path / "logged"
    # not a terminal (a log file): the epoch lines but no progress bar redraws
    assert main(["train", "--data", str(pets), "--out", str(logged), "--epochs", "1", *TINY]) == 0
    captured = capsys.readouterr()
    assert "epoch 1/1: train loss" in captured.err and "img/s" in captured.err
    assert "loss=" not in captured.err and "\r" not in captured.err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["train", "--data", str(pets), "--out", str(out), "--epochs", "1", *TINY]) == 0
    captured = capsys.readouterr()
    assert "loss=" in captured.err and "acc=" in captured.err and "img/s" in captured.err
    assert "epoch 1/1: train loss" in captured.err
    assert "finished: 1/1 epochs" in captured.out and f"--model {out}" in captured.out
    # left-out options keep the stored values; more epochs may be asked for
    assert main(["train", "--resume", "--out", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert "finished: 2/2 epochs" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["arch_options"] == {"width": 4, "depth": 1}
    assert config["training"]["epochs"] == 2
    # under torchrun the other ranks run the same command and leave the talking to rank 0
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "--resume", "--out", str(out), "--epochs", "3", "--no-progress"]) == 0
    assert capsys.readouterr().out == ""
    monkeypatch.delenv("RANK")


def test_usage_errors_exit_2(pets, tmp_path, capsys) -> None:
    assert main(["train", "--out", str(tmp_path / "x")]) == 2
    assert "--data is required" in capsys.readouterr().err
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(pets),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--no-progress",
                *TINY,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["train", "--data", str(pets), "--out", str(out), "--no-progress", *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(out), "--arch", "gapnet-pooled"]) == 2
    # issue 21.10: a sentence naming the stored and the new value (was "arch differ from ...")
    expected = (
        "this setting differs from the stored run's: arch (stored 'gapnet', now 'gapnet-pooled')"
    )
    assert expected in capsys.readouterr().err
    assert (
        main(["train", "--data", str(pets), "--out", str(tmp_path / "y"), "--arch", "resnet_18"])
        == 2
    )
    assert "resnet18" in capsys.readouterr().err


def test_corrupt_file_exit_1_and_explain_grids(pets, tmp_path, capsys) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(pets, data)
    (data / "ant" / "zz_truncated.png").write_bytes(b"\x89PNG\r\n")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--explain", "1"]
    assert main([*args, "--no-progress", *TINY]) == 1
    captured = capsys.readouterr()
    assert "zz_truncated.png" in captured.err and "1 unreadable image file" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_files"]["count"] == 1
    grid = summary["explain"][0]
    assert set(grid["layers"]) == {"first", "middle", "last"}
    assert grid["layers"]["last"]["map_size"] == [16, 16]
    assert (out / "explain" / grid["file"]).is_file()
