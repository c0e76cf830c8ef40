"""``camscope evaluate`` end to end on a tiny model: files, resume, usage errors."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from nets import imagenet_sized

from camscope.cli import _model
from camscope.cli.main import main
from camscope.models import ModelSpec


@pytest.fixture
def patched(monkeypatch):
    spec = ModelSpec(name="tiny", input_size=(32, 32), class_names=[f"c{i}" for i in range(1000)])
    model = imagenet_sized()
    monkeypatch.setattr(_model, "load_model", lambda options: (model, spec, torch.device("cpu")))
    return model


def _run(tmp_path, *extra):
    return main([
        "evaluate", "--methods", "gradcam,eigencam", "--layers", "2", "--steps", "3",
        "--metrics", "loc,pointing,energy,discrimination,drop,deletion,insertion",
        "--out", str(tmp_path / "ev"), "--no-progress", "--examples", "1", "--batch-size", "2", *extra,
    ])  # fmt: skip


def test_evaluate_writes_results_and_report(tmp_path, patched, capsys):
    assert _run(tmp_path, "--data", "builtin:3") == 0
    out = tmp_path / "ev"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["method"] for r in rows} == {"gradcam", "eigencam"}
    assert all(0.0 <= r["iou"] <= 1.0 and len(r["deletion_curve"]) == 4 for r in rows)
    data = json.loads((out / "results.json").read_text())
    assert set(data["leaderboard"]) == {"gradcam", "eigencam"}
    # Win shares of the two methods add up to 100% per image.
    assert sum(data["leaderboard"][m]["win"]["mean"] for m in data["leaderboard"]) == pytest.approx(
        100.0
    )
    with (out / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [t["method"] for t in table] == ["gradcam", "eigencam"] and "deletion_ci95" in table[0]
    html = (out / "report.html").read_text()
    assert "id='leaderboard'" in html and html.count("data:image/png;base64") >= 3
    assert (out / "report.md").exists()
    assert "report:" in capsys.readouterr().out


def test_resume_skips_done_images_and_drops_partial_ones(tmp_path, patched):
    assert _run(tmp_path, "--data", "builtin:2") == 0
    jsonl = tmp_path / "ev" / "results.jsonl"
    first = jsonl.read_text().splitlines()
    # an interrupted run: a half-written line for a third image
    jsonl.write_text("\n".join(first) + '\n{"id": "builtin-0-000002", "meth')
    assert _run(tmp_path, "--data", "builtin:3") == 2  # exists without --resume: usage error
    assert _run(tmp_path, "--data", "builtin:3", "--resume") == 0
    lines = jsonl.read_text().splitlines()
    assert lines[:4] == first  # kept as they were
    assert len(lines) == 6 and {json.loads(x)["id"] for x in lines[4:]} == {"builtin-0-000002"}
    # different settings cannot resume the same folder
    assert _run(tmp_path, "--data", "builtin:3", "--resume", "--threshold", "0.3") == 2


def test_usage_errors(tmp_path, patched, capsys):
    assert _run(tmp_path, "--data", "builtin:2", "--metrics", "speed") == 2
    assert "unknown family" in capsys.readouterr().err
    assert _run(tmp_path, "--data", str(tmp_path / "nothing")) == 2
    assert "no such file" in capsys.readouterr().err


def test_method_options_reach_every_explain_call_and_bind_resume(
    tmp_path, patched, capsys, monkeypatch
):
    from camscope.core import engine

    seen: list[dict] = []
    real = engine.explain

    def spy(*args, **kwargs):
        seen.append(dict(kwargs.get("method_options") or {}))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "explain", spy)  # evaluation imports it from the engine per call
    code = main([
        "evaluate", "--methods", "scorecam", "--layers", "2", "--metrics", "loc,sanity",
        "--sanity-images", "1", "--data", "builtin:2", "--out", str(tmp_path / "ev"),
        "--no-progress", "--examples", "1", "-O", "batch_size=3", "-O", "align_corners=true",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert len(seen) >= 4  # top-5, explained class, sanity cascade, examples
    assert all(opts == {"batch_size": 3, "align_corners": True} for opts in seen)
    stored = json.loads((tmp_path / "ev" / "config.json").read_text())
    assert stored["method_options"] == {"batch_size": 3, "align_corners": True}
    assert _run(tmp_path, "--data", "builtin:2", "-O", "batch_sise=3") == 2
    assert "unknown key 'batch_sise'" in capsys.readouterr().err
