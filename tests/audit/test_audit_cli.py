"""``camscope audit`` end to end on a tiny model: files, schema, escaping, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nets import SmallNet, hook_counts, imagenet_sized
from PIL import Image

from camscope.cli import _model
from camscope.cli.main import main
from camscope.data.read import read_data
from camscope.data.spec import DataOptions, is_builtin
from camscope.errors import DatasetError, UsageError
from camscope.models import ModelSpec

KEYS = {"n", "accuracy", "object_energy", "hotspot_box", "hotspot_share", "hotspot_hits", "flags"}
ODD = ["<b>bold", "a b", "café"]


@pytest.fixture
def imagenet_model(monkeypatch):
    spec = ModelSpec(name="tiny", input_size=(32, 32), class_names=[f"c{i}" for i in range(1000)])
    model = imagenet_sized()
    with torch.no_grad():
        model[-1].bias[281] += 10.0  # always "tabby": a built-in cat class
    monkeypatch.setattr(_model, "load_model", lambda options: (model, spec, torch.device("cpu")))
    return model


@pytest.fixture
def odd_model(monkeypatch):
    """A three-class model whose class names need escaping and safe file names."""
    torch.manual_seed(0)
    model = SmallNet(classes=3).train()  # train mode: the audit must leave it so
    spec = ModelSpec(name="odd", input_size=(32, 32), class_names=ODD)
    monkeypatch.setattr(_model, "load_model", lambda options: (model, spec, torch.device("cpu")))
    return model


def _folders(root, names=ODD, per_class=3):
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_audit_on_the_builtin_set_writes_the_documented_files(tmp_path, imagenet_model, capsys):
    out = tmp_path / "audit"
    code = main(["audit", "--data", "builtin:6", "--out", str(out), "--layer", "2",
                 "--no-progress", "--batch-size", "4", "--min-images", "1"])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "audit.json").read_text())
    assert set(doc["classes"]) <= {"cat", "cup", "rocket", "motorcycle"}
    assert sum(c["n"] for c in doc["classes"].values()) == 6 == doc["images"]
    spots = 0
    for name, entry in doc["classes"].items():
        assert set(entry) == KEYS, name
        assert 0.0 <= entry["object_energy"] <= 1.0  # the built-in set has boxes
        predicted = doc["details"][name]["predicted_n"]
        if entry["hotspot_box"] is None:  # a class the model never predicted has no hot spot
            assert predicted == 0 and doc["details"][name]["mean_map"] is None
            continue
        spots += 1
        x0, y0, x1, y1 = entry["hotspot_box"]
        assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
        assert entry["hotspot_share"] == pytest.approx((x1 - x0) * (y1 - y0), abs=1e-3)
        assert 0.0 <= entry["hotspot_hits"] <= 1.0
        assert (out / doc["details"][name]["mean_map"]).is_file()
    assert spots == 1 and doc["details"]["cat"]["predicted_n"] == 6
    assert doc["flagged"] == [n for n, c in doc["classes"].items() if c["flags"]]
    lines = (out / "images.jsonl").read_text().splitlines()
    assert len(lines) == 6 and {"peak", "object_energy"} <= set(json.loads(lines[0]))
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= len(doc["classes"])
    assert "flagged classes" in capsys.readouterr().out
    assert hook_counts(imagenet_model) == {}


def test_class_folders_odd_names_a_broken_file_and_exit_1(tmp_path, odd_model, capsys):
    root = _folders(tmp_path / "data")
    (root / "a b" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "audit"
    code = main(["audit", "--data", str(root), "--out", str(out), "--no-progress",
                 "--min-images", "1", "--examples", "1"])  # fmt: skip
    assert code == 1  # one input failed, the others were audited
    err = capsys.readouterr().err
    assert "broken.png" in err
    doc = json.loads((out / "audit.json").read_text())
    assert doc["images"] == 9 and [f["id"] for f in doc["failed"]] == ["a b/broken.png"]
    assert list(doc["classes"]) == sorted(ODD)  # folder order
    assert all(c["object_energy"] is None for c in doc["classes"].values())  # no boxes
    files = {name: d["mean_map"] for name, d in doc["details"].items() if d["mean_map"]}
    assert files and all((out / f).is_file() for f in files.values())
    safe = {
        "<b>bold": "mean_map_b_bold.png",
        "a b": "mean_map_a_b.png",
        "café": "mean_map_cafe.png",
    }
    assert all(safe[name] == file for name, file in files.items())
    html = (out / "report.html").read_text()
    assert "<b>bold" not in html and "&lt;b&gt;bold" in html
    assert all(m.training for m in odd_model.modules())  # modes as they were
    assert hook_counts(odd_model) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "no/such/folder"], "no such file or folder"),
        (["--method", "gradcam,layercam"], "one method"),
        (["--max-hotspot-area", "1.5"], ""),
        (["--layer", "nope"], "no layer named"),
    ],
)
def test_usage_errors_exit_2(tmp_path, imagenet_model, capsys, args, message):
    base = ["audit", "--data", "builtin:2", "--out", str(tmp_path / "a"), "--no-progress"]
    assert main([*base, *args]) == 2
    assert message in capsys.readouterr().err


def test_a_class_folder_the_model_does_not_know_is_named(tmp_path, odd_model, capsys):
    root = _folders(tmp_path / "data", names=["<b>bold", "yak", "zebra"], per_class=1)
    assert main(["audit", "--data", str(root), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "'yak'" in err and "'zebra'" in err and "bold" not in err  # every unknown one at once


def test_read_data_kinds_and_errors(tmp_path) -> None:
    assert is_builtin("builtin") and is_builtin("builtin:7") and not is_builtin("builtin_mine")
    names = ["cat", "cup", "motorcycle", "rocket"]
    data = read_data("builtin:3", names, size=32)
    assert data.kind == "builtin" and len(data.items) == 3
    item = data.items[0]
    assert item.label in names and item.class_ids == (names.index(item.label),) and item.boxes
    # a folder called builtin_mine is a folder, not the built-in set
    folder = _folders(tmp_path / "builtin_mine", names=["cat", "cup"], per_class=1)
    assert read_data(str(folder), names).kind == "folders"
    unmapped = read_data(str(folder), ["x", "y"], DataOptions(unmapped="keep"))
    assert unmapped.items[0].class_ids == ()
    assert read_data(str(folder), ["x", "cup"], DataOptions(unmapped="skip")).classes == ["cup"]
    with pytest.raises(DatasetError, match="class folders"):
        read_data(str(folder), ["x", "y"])
    with pytest.raises(UsageError, match="builtin:N"):
        read_data("builtin:x", names)
    with pytest.raises(UsageError, match="empty"):
        read_data("  ", names)


def test_boxes_with_a_class_map_and_unmapped_labels_skipped(tmp_path, odd_model, capsys):
    data = tmp_path / "csv"
    (data / "images").mkdir(parents=True)
    rows = ["file,class,x0,y0,x1,y1"]
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            data / "images" / f"{i}.png"
        )
        rows.append(f"images/{i}.png,{'kitty' if i < 4 else 'zebra'},2,2,20,{10 + i}")
    (data / "boxes.csv").write_text("\n".join(rows) + "\n")
    class_map = tmp_path / "map.json"
    class_map.write_text(json.dumps({"kitty": ["<b>bold"]}))
    out = tmp_path / "a"
    base = ["audit", "--data", str(data), "--out", str(out), "--no-progress", "--min-images", "1"]
    assert main([*base, "--class-map", str(class_map)]) == 2  # zebra is no class: an error
    assert "'zebra'" in capsys.readouterr().err
    assert main([*base, "--class-map", str(class_map), "--unmapped", "skip"]) == 0
    assert "zebra" in capsys.readouterr().err  # said on stderr, not silently dropped
    doc = json.loads((out / "audit.json").read_text())
    assert list(doc["classes"]) == ["kitty"] and doc["classes"]["kitty"]["n"] == 4
    assert doc["classes"]["kitty"]["object_energy"] is not None
    assert len(doc["skipped"]) == 2


def test_a_single_logit_model_is_audited_as_a_binary_classifier(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    model = SmallNet(classes=1).eval()
    spec = ModelSpec(name="binary", input_size=(32, 32), class_names=["no", "yes"])
    monkeypatch.setattr(_model, "load_model", lambda options: (model, spec, torch.device("cpu")))
    root = _folders(tmp_path / "data", names=["no", "yes"], per_class=3)
    out = tmp_path / "a"
    code = main(
        ["audit", "--data", str(root), "--out", str(out), "--no-progress", "--examples", "0"]
    )
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    # the prediction is the sign of the one logit, its probability the sigmoid's
    with torch.no_grad():
        logits = torch.cat([model(_as_input(root / r["id"])) for r in records])[:, 0]
    assert [r["predicted"] for r in records] == [int(v > 0) for v in logits]
    expected = [float(torch.sigmoid(v if v > 0 else -v)) for v in logits]
    assert [r["probability"] for r in records] == pytest.approx(expected, abs=1e-4)


def _as_input(path) -> torch.Tensor:
    from camscope.io import load_image, preprocess

    return preprocess(load_image(path), ModelSpec(name="binary", input_size=(32, 32)))
