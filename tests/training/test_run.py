"""A training run end to end on a tiny generated ImageFolder: the run folder, resume, early
stopping and corrupt files."""

from __future__ import annotations

import csv
import json
import logging
import os
import stat

import pytest
import torch
from safetensors.torch import load_file
from tiny_data import tiny_config, write_image_folder

from camscope.errors import UsageError
from camscope.training import resume_config, train


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("data") / "pets", ("ant", "bee"), 10)


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_run_folder_holds_every_file(folder, tmp_path) -> None:
    result = train(tiny_config(folder, tmp_path / "run", epochs=2))
    out = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "last.ckpt", "metrics.csv", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "confusion.png").is_file() and (out / "summary.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["camscope_run"] == 1 and config["classes"] == ["ant", "bee"]
    assert config["image_size"] == 16 and len(config["mean"]) == len(config["std"]) == 3
    assert config["arch"] == "gapnet" and config["arch_options"] == {"width": 4, "depth": 1}
    assert config["seed"] == 0 and "torch" in config["versions"]
    assert config["data"]["train_per_class"] == {"ant": 8, "bee": 8}
    assert config["cam_layer"]["map_size"] == [16, 16]
    rows = _rows(out / "metrics.csv")
    assert list(rows[0]) == [
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "seconds",
    ]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["skipped_files"]["count"] == 0
    assert set(summary["per_class_accuracy"]) == {"ant", "bee"}
    assert summary["per_class_accuracy"]["ant"]["n"] == 2
    best = max(rows, key=lambda r: float(r["val_acc"]))
    assert result.best_epoch == int(best["epoch"]) and result.best_val_acc == pytest.approx(
        float(best["val_acc"]), abs=1e-6
    )
    ckpt = torch.load(out / "last.ckpt", weights_only=True)
    assert ckpt["progress"]["epoch"] == 2
    assert {"model", "optimizer", "scheduler", "scaler", "rng"} <= set(ckpt)
    with pytest.raises(UsageError, match="already holds a run"):
        train(tiny_config(folder, out, epochs=2))


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_every_file_of_a_run_folder_has_a_plain_files_permissions(folder, tmp_path, umask) -> None:
    """Issue 21.11: model.safetensors was 0600 (safetensors' own writer) while the rest was
    0644. Every file the run writes, the --explain grids and a resumed run's rewrites included,
    gets what a plain open() gives (0666 less the umask): also a group-shared umask of 002."""
    out = tmp_path / "run"
    previous = os.umask(umask)
    try:
        train(tiny_config(folder, out, epochs=2, stop_after=1))
        train(resume_config(out, explain=1))
    finally:
        os.umask(previous)
    written = {p.relative_to(out).as_posix(): p for p in out.rglob("*")}
    expected = {"config.json", "model.safetensors", "last.ckpt", "metrics.csv", "curves.png"}
    expected |= {"confusion.png", "summary.json", "explain"}
    assert expected <= set(written) and any(n.startswith("explain/") for n in written)
    for name, path in written.items():
        mode = 0o777 & ~umask if path.is_dir() else 0o666 & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == mode, (name, oct(mode))


def test_two_epochs_and_a_resume_equal_four_straight_epochs(folder, tmp_path) -> None:
    straight = train(tiny_config(folder, tmp_path / "straight", augment="pad-crop"))
    paused = train(tiny_config(folder, tmp_path / "resumed", augment="pad-crop", stop_after=2))
    assert paused.status == "paused" and paused.epochs_done == 2
    resumed = train(resume_config(tmp_path / "resumed"))
    assert straight.status == resumed.status == "finished" and resumed.epochs_done == 4
    a = torch.load(tmp_path / "straight" / "last.ckpt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    best_a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    best_b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    for key in best_a:
        torch.testing.assert_close(best_b[key], best_a[key], rtol=1e-5, atol=1e-6)
    rows_a = _rows(tmp_path / "straight" / "metrics.csv")
    rows_b = _rows(tmp_path / "resumed" / "metrics.csv")
    assert [r["epoch"] for r in rows_b] == ["1", "2", "3", "4"]  # no epoch twice
    for ra, rb in zip(rows_a, rows_b):
        assert {k: v for k, v in ra.items() if k != "seconds"} == {
            k: v for k, v in rb.items() if k != "seconds"
        }
    # a finished run resumes to nothing new
    again = train(resume_config(tmp_path / "resumed"))
    assert again.epochs_done == 4 and len(_rows(tmp_path / "resumed" / "metrics.csv")) == 4


def test_resume_refuses_other_settings(folder, tmp_path) -> None:
    train(tiny_config(folder, tmp_path / "run", epochs=1))
    with pytest.raises(UsageError, match="arch"):
        resume_config(tmp_path / "run", arch="gapnet-pooled")
    with pytest.raises(UsageError, match="no run to continue"):
        resume_config(tmp_path / "nothing")
    longer = resume_config(tmp_path / "run", epochs=2)  # more epochs may be asked for
    assert longer.epochs == 2 and longer.arch == "gapnet" and longer.resume


def test_early_stopping(folder, tmp_path) -> None:
    # a learning rate too small to change a prediction: validation accuracy cannot improve
    result = train(tiny_config(folder, tmp_path / "run", epochs=5, lr=1e-12, patience=1))
    assert result.status == "stopped early" and result.epochs_done == 2 and result.best_epoch == 1


def test_corrupt_file_is_named_skipped_and_counted(folder, tmp_path, caplog) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(folder, data)
    (data / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is no image")
    with caplog.at_level(logging.WARNING, logger="camscope"):
        result = train(tiny_config(data, tmp_path / "run", epochs=2, val_split=0.1))
    assert result.status == "finished"
    warned = [r.getMessage() for r in caplog.records if "broken.png" in r.getMessage()]
    assert len(warned) == 1  # named once, although every epoch meets it
    skipped = result.summary["skipped_files"]
    assert skipped["count"] == 1 and skipped["files"][0]["file"].endswith("broken.png")
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 2  # training went on


def test_dataloader_workers_keep_the_run_reproducible_across_a_resume(folder, tmp_path) -> None:
    """Workers draw their crops from generators seeded through the epoch's reseeding."""
    common = {"augment": "pad-crop", "workers": 2, "epochs": 2}
    train(tiny_config(folder, tmp_path / "straight", **common))
    train(tiny_config(folder, tmp_path / "resumed", stop_after=1, **common))
    train(resume_config(tmp_path / "resumed"))
    a = torch.load(tmp_path / "straight" / "last.ckpt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)


def test_the_epoch_bar_is_the_one_progress_bar() -> None:
    """train's epoch bar is data.progress.Progress: the images of each step, loss and accuracy
    beside it on a terminal."""
    from camscope.data.progress import Progress
    from camscope.training.epochs import _updater

    steps: list[tuple[int, int]] = []
    bar = Progress(10, "epoch 1/2", callback=lambda done, total: steps.append((done, total)))
    update = _updater(bar)
    update(4, 0.5, 0.25)
    update(6, None, None)
    assert steps == [(4, 10), (10, 10)]
