"""A camscope train run folder is a model: load_model(RUN_DIR), and the commands with
``--model RUN_DIR`` and no other flag (predict, explain, layers, evaluate; in-process)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tiny_data import tiny_run

from camscope import load_model
from camscope.cli.main import main
from camscope.data.synthetic import SyntheticBenchmark
from camscope.errors import ModelLoadError
from camscope.models.run_folder import is_run_folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One epoch of a tiny GapNet on 24 built-in images at 32 px."""
    return tiny_run(tmp_path_factory.mktemp("runs") / "gap")


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    SyntheticBenchmark(1, size=64, seed=5).__getitem__(0).image.save(path)
    return path


def test_load_model_reads_the_run_folder(run_dir) -> None:
    model, spec = load_model(str(run_dir))
    assert not model.training
    assert spec.class_names == ["cat", "cup", "motorcycle", "rocket"]
    assert spec.input_size == (32, 32) and spec.source.startswith("camscope run folder")
    config = json.loads((run_dir / "config.json").read_text())
    assert list(spec.mean) == config["mean"] and list(spec.std) == config["std"]
    best = load_file(str(run_dir / "model.safetensors"))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, best[key])
    random_model, _ = load_model(str(run_dir), pretrained=False)
    assert not torch.equal(random_model.fc.weight, model.fc.weight)


def test_only_marked_folders_are_run_folders(run_dir, tmp_path) -> None:
    assert is_run_folder(run_dir)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))  # Hugging Face
    assert not is_run_folder(tmp_path)
    early = tmp_path / "early"
    shutil.copytree(run_dir, early)
    (early / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="--resume"):
        load_model(str(early))


def test_predict_explain_layers_with_no_other_flag(run_dir, picture, tmp_path, capsys) -> None:
    assert main(["predict", str(picture), "--model", str(run_dir), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    labels = [p["label"] for p in record["images"][0]["predictions"]]
    assert sorted(labels) == ["cat", "cup", "motorcycle", "rocket"]  # every class, top-k = 4
    out = tmp_path / "explain"
    code = main(
        ["explain", str(picture), "--model", str(run_dir), "--method", "cam", "--out", str(out)]
    )
    assert code == 0
    assert (out / "scene.cam.png").is_file()
    assert Image.open(out / "scene.cam.png").size == (64, 64)
    capsys.readouterr()
    assert main(["layers", str(run_dir), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["auto"] == "features" and table["input"] == [3, 32, 32]
    auto = next(row for row in table["layers"] if row["name"] == "features")
    assert auto["shape"][1:] == [32, 32]  # seed 004: the CAM layer keeps the input's size


def test_evaluate_maps_the_builtin_objects_to_the_run_classes(run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(run_dir), "--data", "builtin:4", "--methods", "cam"]
    args += ["--metrics", "pointing,energy", "--out", str(out), "--no-progress", "--examples", "0"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in rows}) == 4
    assert {r["target_name"] for r in rows} <= {"cat", "cup", "motorcycle", "rocket"}
    assert all(0.0 <= r["energy"] <= 100.0 for r in rows)  # percent of the map energy


def test_serve_offers_the_run_folder_by_its_path(run_dir, picture) -> None:
    from fastapi.testclient import TestClient

    from camscope.serve.viewer.app import ServeConfig, create_app

    client = TestClient(create_app(ServeConfig(models=[str(run_dir)], allow_url=False)))
    data = picture.read_bytes()
    reply = client.post(
        "/api/explain",
        files={"image": ("scene.png", data, "image/png")},
        data={"methods": "cam", "overlays": "false"},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == str(run_dir) and body["layer"] == "features"
    assert {t["label"] for t in body["top5"]} == {"cat", "cup", "motorcycle", "rocket"}
    assert body["maps"]["cam"]["shape"] == [32, 32]  # the run's image size, as config.json says
