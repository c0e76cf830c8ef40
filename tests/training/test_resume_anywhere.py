"""A run folder resumes from wherever it is now (issue 21, item 10): the same folder spelled as an
absolute path, from another working directory, after a move or as a copy; a setting that really
differs is still refused, in a sentence that names the stored and the new value."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny_data import write_image_folder

from camscope.cli.main import main
from camscope.errors import UsageError
from camscope.training import TrainConfig, resume_config, train

TINY = ["--arch", "gapnet", "--width", "4", "--depth", "1", "--image-size", "16"]
TINY += ["--batch-size", "8", "--val-split", "0.2", "--no-progress"]


@pytest.fixture
def paused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 3-epoch run paused after 1 epoch, started from ``tmp_path/work`` with relative paths."""
    work = tmp_path / "work"
    write_image_folder(work / "pets", ("ant", "bee"), 10)
    monkeypatch.chdir(work)
    args = ["train", "--data", "pets", "--out", "run", "--epochs", "3", "--stop-after", "1"]
    assert main([*args, *TINY]) == 0
    return work / "run"


def _epochs(run: Path) -> int:
    return int(json.loads((run / "summary.json").read_text())["epochs_done"])


def test_the_stored_settings_hold_no_folder_and_absolute_paths(paused: Path) -> None:
    stored = json.loads((paused / "config.json").read_text())["training"]
    assert "out" not in stored  # the run is its folder, wherever it is
    assert stored["data"] == str(paused.parent.resolve() / "pets")


def test_an_absolute_spelling_resumes(paused: Path) -> None:
    config = resume_config(str(paused.resolve()), stop_after=1)  # was "out differ"
    assert train(config).epochs_done == 2
    # and the relative spelling still does, with the data spelled another way too
    config = resume_config("./run/", data=str(paused.parent / "pets"))
    assert train(config).status == "finished" and _epochs(paused) == 3


def test_another_working_directory_resumes(
    paused: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # "pets" means nothing here: the stored path is absolute
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(paused), "--stop-after", "1"]) == 0
    assert "paused: 2/3 epochs" in capsys.readouterr().out


def test_a_moved_and_a_copied_run_resume_and_match_the_original(
    paused: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copies" / "run-copy"
    shutil.copytree(paused, copy)
    moved = tmp_path / "moved" / "run"
    moved.parent.mkdir()
    shutil.move(str(paused), moved)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "--out", "moved/run", "--no-progress"]) == 0
    assert main(["train", "--resume", "--out", str(copy), "--no-progress"]) == 0
    assert _epochs(moved) == _epochs(copy) == 2  # the stored --stop-after 1: one more epoch
    a = torch.load(moved / "last.ckpt", weights_only=True)["model"]
    b = torch.load(copy / "last.ckpt", weights_only=True)["model"]
    for key, value in a.items():  # the same two epochs, wherever each copy was
        torch.testing.assert_close(value, b[key])


def test_a_real_difference_is_still_refused_in_a_sentence(paused: Path) -> None:
    with pytest.raises(UsageError) as info:
        resume_config(str(paused), lr=0.1)
    message = str(info.value)
    assert "this setting differs from the stored run's: lr (stored None, now 0.1)" in message
    assert "out (stored" not in message  # the folder is not a setting
    with pytest.raises(
        UsageError, match=r"these settings differ .*data .*seed \(stored 0, now 3\)"
    ):
        resume_config(str(paused), seed=3, data=str(paused.parent))
    with pytest.raises(UsageError, match="this setting differs"):  # the library path too
        train(
            TrainConfig.from_dict({**resume_config(str(paused)).to_dict(), "arch": "gapnet-pooled"})
        )


def test_paths_are_compared_by_the_place_they_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c10").mkdir()
    (tmp_path / "start.pt").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    stored = TrainConfig(data="cifar10:c10", out="o", val="test", pretrained="start.pt").stored()
    assert stored["data"] == f"cifar10:{tmp_path.resolve() / 'c10'}"
    assert stored["val"] == "test" and stored["pretrained"] == str(tmp_path.resolve() / "start.pt")
    same = TrainConfig(
        data="cifar10:./c10/", out="/x", val="test", pretrained=str(tmp_path / "start.pt")
    )
    assert same.differences(stored) == []
    other = TrainConfig(data="cifar100:c10", out="o", val="test", pretrained="start.pt")
    assert other.differences(stored) == ["data"]
    assert TrainConfig(data="builtin:24", out="o").stored()["data"] == "builtin:24"
