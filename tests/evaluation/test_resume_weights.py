"""``camscope evaluate --resume`` refuses a model whose weights changed behind the same name
(issue 21, item 1's class of bug): a run folder whose ``model.safetensors`` was replaced, a
model file rewritten in place. ``config.json`` records the digest of the evaluated tensors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from nets import imagenet_sized
from safetensors.torch import load_file, save_file
from tiny_data import tiny_run

from camscope.cli.main import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("runs") / "gap")


def _evaluate(model: str, out, *extra: str) -> int:
    return main([
        "evaluate", "--model", model, "--data", "builtin:3", "--methods", "gradcam",
        "--metrics", "energy", "--out", str(out), "--no-progress", "--examples", "0",
        "--batch-size", "2", *extra,
    ])  # fmt: skip


def test_a_run_folder_with_other_weights_cannot_resume(run_dir, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    out = tmp_path / "eval"
    assert _evaluate(str(run), out, "--limit", "2") == 0
    stored = json.loads((out / "config.json").read_text())["weights_digest"]
    assert stored.startswith("sha256:")
    original = load_file(str(run / "model.safetensors"))
    save_file({k: v * 2 if v.is_floating_point() else v for k, v in original.items()},
              str(run / "model.safetensors"))  # fmt: skip
    capsys.readouterr()
    assert _evaluate(str(run), out, "--resume") == 2
    assert "weights_digest (stored" in capsys.readouterr().err
    assert len((out / "results.jsonl").read_text().splitlines()) == 2  # nothing was added
    save_file(original, str(run / "model.safetensors"))
    assert _evaluate(str(run), out, "--resume") == 0
    assert json.loads((out / "config.json").read_text())["weights_digest"] == stored


def test_a_model_file_rewritten_in_place_cannot_resume(tmp_path, capsys) -> None:
    path = tmp_path / "net.pt"
    model = imagenet_sized()
    torch.save(model, path)
    out = tmp_path / "eval"
    trust = ("--trust-checkpoint", "--input-size", "32")
    assert _evaluate(str(path), out, *trust, "--limit", "2") == 0
    with torch.no_grad():
        model[-1].weight.mul_(-2.0)
    torch.save(model, path)  # the same architecture, other weights
    capsys.readouterr()
    assert _evaluate(str(path), out, *trust, "--resume") == 2
    assert "weights_digest (stored" in capsys.readouterr().err
