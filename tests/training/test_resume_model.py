"""``camscope train --resume`` refuses a run folder whose model was replaced (issue 21, item 1's
class of bug): another ``model.safetensors`` (the resumed run would keep it as its best epoch)
or other ``--pretrained`` weights than the run started from. A replaced data folder still
resumes, and so does a run stopped between writing its best weights and its checkpoint."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tiny_data import tiny_config, write_image_folder

from camscope.errors import UsageError
from camscope.training import epochs, resume_config, train


def _config(data, out, **changes):
    return tiny_config(data, out, **{"epochs": 3, "monitor": "val_loss", **changes})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("data") / "pets", ("ant", "bee"), 10)


def _scramble(path) -> None:
    """Other weights of the same architecture in the same file."""
    state = load_file(str(path))
    save_file({k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}, str(path))


def test_a_replaced_best_model_cannot_resume_and_a_restored_one_can(folder, tmp_path) -> None:
    run = tmp_path / "run"
    train(_config(folder, run, stop_after=1))
    kept = tmp_path / "kept.safetensors"
    shutil.copy(run / "model.safetensors", kept)
    _scramble(run / "model.safetensors")
    with pytest.raises(UsageError, match=r"model.safetensors is not the file this run wrote"):
        train(resume_config(run))
    (run / "model.safetensors").unlink()
    with pytest.raises(UsageError, match=r"model.safetensors is missing"):
        train(resume_config(run))
    shutil.copy(kept, run / "model.safetensors")
    assert train(resume_config(run, stop_after=None)).epochs_done == 3


def test_a_run_stopped_after_its_best_weights_and_before_its_checkpoint_resumes(
    folder, tmp_path, monkeypatch
) -> None:
    run = tmp_path / "run"
    real = epochs.save_checkpoint
    calls = []

    def dies_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # after epoch 2's best weights, before its checkpoint
        return real(*args, **kwargs)

    monkeypatch.setattr(epochs, "save_checkpoint", dies_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        train(_config(folder, run))
    monkeypatch.undo()
    with safe_open(str(run / "model.safetensors"), "pt") as handle:
        assert handle.metadata()["epoch"] == "2"  # written by the epoch the checkpoint lacks
    assert torch.load(run / "last.ckpt", weights_only=True)["progress"]["epoch"] == 1
    assert train(resume_config(run, stop_after=None)).epochs_done == 3


def test_other_pretrained_weights_cannot_resume_but_another_data_folder_can(
    folder, tmp_path
) -> None:
    start = tmp_path / "start"
    train(_config(folder, start, epochs=1))
    weights = tmp_path / "start.safetensors"
    shutil.copy(start / "model.safetensors", weights)
    run = tmp_path / "run"
    train(_config(folder, run, pretrained=str(weights), stop_after=1))
    # The data folder replaced by another copy: fine.
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    shutil.rmtree(folder)
    shutil.copytree(moved, folder)
    _scramble(weights)
    with pytest.raises(UsageError, match=r"pretrained weights .* are not those the run started"):
        train(resume_config(run))
    shutil.copy(start / "model.safetensors", weights)
    assert train(resume_config(run, stop_after=None)).epochs_done == 3
