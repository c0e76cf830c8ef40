"""``camscope evaluate`` end to end on a tiny model: files, resume, usage errors."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch
from cli_helpers import patch_loader
from nets import imagenet_sized

from camscope.cli.main import main
from camscope.models import ModelSpec


@pytest.fixture
def patched(monkeypatch):
    spec = ModelSpec(name="tiny", input_size=(32, 32), class_names=[f"c{i}" for i in range(1000)])
    model = imagenet_sized()
    patch_loader(monkeypatch, model, spec)
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
    assert [t["method"] for t in table] == ["gradcam", "eigencam"] and "deletion_low" in table[0]
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


# ---------------------------------------------------------------------------------------------
# Hardening (issue 15) and real data sets (issue 16)


def _quick(tmp_path, *extra, out="q"):
    return main([
        "evaluate", "--methods", "gradcam", "--layers", "2", "--metrics", "energy,drop",
        "--out", str(tmp_path / out), "--no-progress", "--examples", "0", *extra,
    ])  # fmt: skip


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height and holds no pixel data (cheap to write)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def _csv_data(folder, names):
    folder.mkdir(exist_ok=True)
    rows = "".join(f"{n},5,2,2,20,20\n" for n in names)
    (folder / "boxes.csv").write_text(rows)
    return folder


def test_bad_images_are_reported_and_skipped_and_the_run_goes_on(tmp_path, patched, capsys):
    import numpy as np
    from PIL import Image

    data = _csv_data(tmp_path / "data", ["good.png", "grey16.png", "trunc.png", "text.png",
                                         "empty.png", "bomb.png", "big.png"])  # fmt: skip
    Image.new("RGB", (40, 30), (200, 120, 40)).save(data / "good.png")
    Image.fromarray(np.full((30, 40), 30000, dtype=np.uint16)).save(data / "grey16.png")
    (data / "trunc.png").write_bytes((data / "good.png").read_bytes()[:60])
    (data / "text.png").write_text("not an image")
    (data / "empty.png").write_bytes(b"")
    _png_header_only(data / "bomb.png", 30000, 30000)
    Image.new("RGB", (200, 100)).save(data / "big.png")
    code = _quick(tmp_path, "--data", str(data), "--max-pixels", "10000")
    err = capsys.readouterr().err
    assert code == 1
    for name in ("trunc.png", "text.png", "empty.png", "bomb.png", "big.png"):
        assert f"skipped {data / name}" in err
    big = next(line for line in err.splitlines() if "big.png" in line)
    assert "--max-pixels" in big and "internal error" not in err  # io's own wording otherwise
    result = json.loads((tmp_path / "q" / "results.json").read_text())
    assert {f["id"] for f in result["failed"]} == {
        "trunc.png", "text.png", "empty.png", "bomb.png", "big.png",
    }  # fmt: skip
    assert result["images"] == 2
    assert "Skipped images" in (tmp_path / "q" / "report.md").read_text()


def test_evaluate_reads_images_as_explain_does(tmp_path):
    import numpy as np
    from PIL import Image

    from camscope import io
    from camscope.data.dataset import GroundTruth, Sample
    from camscope.evaluation import to_input

    spec = ModelSpec(name="tiny", input_size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((30, 40), 30000, dtype=np.uint16)).save(path)
    sample = Sample("g", str(path), objects=(GroundTruth("x", (1,), (0.0, 0.0, 10.0, 10.0)),))
    x, scale = to_input(sample, spec)
    assert torch.equal(x, io.preprocess(io.load_image(path), spec)[0])
    assert scale == (32 / 40, 32 / 30)
    assert float(x.max()) < 0.0  # 30000 / 65535 of white, not all white (1.0)


def test_builtin_is_matched_exactly_and_built_lazily(tmp_path, patched, capsys, monkeypatch):
    from PIL import Image

    from camscope.data.synthetic import SyntheticBenchmark

    mine = _csv_data(tmp_path / "builtin_mydata", ["a.png"])
    Image.new("RGB", (40, 30)).save(mine / "a.png")
    assert _quick(tmp_path, "--data", str(mine)) == 0
    rows = [json.loads(x) for x in (tmp_path / "q" / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a.png"]
    monkeypatch.chdir(tmp_path)
    assert _quick(tmp_path, "--data", "builtin_mydata", out="rel") == 0  # a relative folder too
    assert _quick(tmp_path, "--data", "builtin:many", out="bad") == 2
    assert "expected builtin:N" in capsys.readouterr().err
    rendered = []
    real = SyntheticBenchmark.render
    monkeypatch.setattr(
        SyntheticBenchmark, "render", lambda self, i: rendered.append(i) or real(self, i)
    )
    assert _quick(tmp_path, "--data", "builtin:4000", "--limit", "2", out="lazy") == 0
    assert sorted(set(rendered)) == [0, 1]


def test_resume_never_truncates_results_in_place(tmp_path, patched):
    assert _quick(tmp_path, "--data", "builtin:2") == 0
    jsonl = tmp_path / "q" / "results.jsonl"
    jsonl.write_text(jsonl.read_text() + '{"id": "builtin-0-000002", "meth')
    opened: list[str] = []
    recording = [True]

    def hook(event, args):
        if recording[0] and event == "open" and str(args[0]).endswith("results.jsonl"):
            opened.append(str(args[1]))

    sys.addaudithook(hook)  # cannot be removed: it records during this test only
    try:
        assert _quick(tmp_path, "--data", "builtin:3", "--resume") == 0
    finally:
        recording[0] = False
    assert "w" not in "".join(opened)  # only read ("r") and append ("a")
    assert len(jsonl.read_text().splitlines()) == 3


def test_concurrent_runs_and_repeated_rows(tmp_path, patched, capsys):
    import subprocess
    import textwrap

    from camscope.outputs import LOCK_NAME

    out = tmp_path / "q"
    out.mkdir()
    code = textwrap.dedent(f"""
        import fcntl, time
        fh = open({str(out / LOCK_NAME)!r}, "a+")
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.write("camscope evaluate (pid 4242 on test)"); fh.flush()
        print("locked", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        assert _quick(tmp_path, "--data", "builtin:2") == 2
        assert "in use by another camscope evaluate (pid 4242 on test)" in capsys.readouterr().err
    finally:
        child.kill()
        child.wait()
    assert _quick(tmp_path, "--data", "builtin:2") == 0
    jsonl = out / "results.jsonl"
    jsonl.write_text(jsonl.read_text() * 2)  # what two unlocked writers left behind
    assert _quick(tmp_path, "--data", "builtin:2", "--resume") == 0
    result = json.loads((out / "results.json").read_text())
    assert result["images"] == 2 and result["leaderboard"]["gradcam"]["energy"]["n"] == 2


def test_config_records_the_model_and_resume_reports_only_selected_rows(
    tmp_path, patched, capsys, monkeypatch
):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights v1")
    assert _quick(tmp_path, "--data", "builtin:3", "--weights", str(weights)) == 0
    stored = json.loads((tmp_path / "q" / "config.json").read_text())
    assert stored["weights"].startswith(str(weights.resolve())) and "sha256" in stored["weights"]
    assert stored["random_init"] is False and stored["model_input"]["input_size"] == [32, 32]
    weights.write_bytes(b"weights v2")  # same path, other weights
    assert _quick(tmp_path, "--data", "builtin:3", "--weights", str(weights), "--resume") == 2
    assert "weights (stored" in capsys.readouterr().err
    assert _quick(tmp_path, "--data", "builtin:3", "--random-init", "--resume") == 2
    err = capsys.readouterr().err
    assert "random_init (stored False, now True)" in err and "weights (stored" in err
    weights.write_bytes(b"weights v1")
    assert _quick(tmp_path, "--data", "builtin:3", "--weights", str(weights), "--resume",
                  "--limit", "1") == 0  # fmt: skip
    result = json.loads((tmp_path / "q" / "results.json").read_text())
    assert result["images"] == 1 and result["leaderboard"]["gradcam"]["energy"]["n"] == 1


def test_timing_counts_a_killed_session_and_numbers_are_validated(
    tmp_path, patched, capsys, monkeypatch
):
    from camscope.evaluation import run as run_module

    real = run_module.evaluate_batch
    calls = []

    def dies_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "evaluate_batch", dies_on_second_batch)
    assert _quick(tmp_path, "--data", "builtin:2", "--batch-size", "1") == 130
    timing = json.loads((tmp_path / "q" / "timing.json").read_text())
    assert timing["images"] == 1 and timing["sessions"] == 1
    monkeypatch.setattr(run_module, "evaluate_batch", real)
    assert _quick(tmp_path, "--data", "builtin:2", "--batch-size", "1", "--resume") == 0
    timing = json.loads((tmp_path / "q" / "timing.json").read_text())
    assert timing["images"] == 2 and timing["sessions"] == 2
    for bad in (["--tolerance", "nan"], ["--tolerance", "-1"], ["--threshold", "inf"]):
        assert _quick(tmp_path, "--data", "builtin:2", *bad, out="v") == 2
        assert "must be a finite number" in capsys.readouterr().err


def test_report_escapes_the_model_name_and_the_data_path(tmp_path, monkeypatch):
    from PIL import Image

    spec = ModelSpec(name="net<script>*x*[a](b)", input_size=(32, 32),
                     class_names=[f"c{i}" for i in range(1000)])  # fmt: skip
    model = imagenet_sized()
    patch_loader(monkeypatch, model, spec)
    data = _csv_data(tmp_path / "d_[x](y)_<b>", ["a.png"])
    Image.new("RGB", (40, 30)).save(data / "a.png")
    assert _quick(tmp_path, "--data", str(data)) == 0
    md = (tmp_path / "q" / "report.md").read_text()
    assert "<script>" not in md and "<b>" not in md and "[x](y)" not in md and "*x*" not in md
    assert r"net&lt;script&gt;\*x\*\[a\]\(b\)" in md
    html = (tmp_path / "q" / "report.html").read_text()
    assert "<script>" not in html and "net&lt;script&gt;" in html
    assert "Verdict for this model and data" in md


def test_pet_layout_with_a_class_map_and_skipped_classes(tmp_path, patched, capsys):
    from PIL import Image

    data = tmp_path / "pets"
    (data / "annotations" / "xmls").mkdir(parents=True)
    (data / "images").mkdir()
    for stem, labels in (("Abyssinian_1", ["kitty", "person"]), ("beagle_2", ["person"])):
        Image.new("RGB", (40, 30), (90, 60, 30)).save(data / "images" / f"{stem}.jpg")
        objects = "".join(
            f"<object><name>{n}</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>20</xmax>"
            "<ymax>20</ymax></bndbox></object>"
            for n in labels
        )
        (data / "annotations" / "xmls" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename>{objects}</annotation>"
        )
    class_map = tmp_path / "map.json"
    class_map.write_text(json.dumps({"kitty": ["c5", 7]}))
    assert _quick(tmp_path, "--data", str(data), "--class-map", str(class_map)) == 2
    assert "'person' (2 object(s), first in" in capsys.readouterr().err
    args = ("--data", str(data), "--class-map", str(class_map), "--unmapped", "skip")
    assert _quick(tmp_path, *args) == 0
    err = capsys.readouterr().err
    assert "skipped 2 object(s) whose class maps to no model class ('person': 2)" in err
    assert "skipped 1 image(s) left without an object" in err
    (row,) = [json.loads(x) for x in (tmp_path / "q" / "results.jsonl").read_text().splitlines()]
    assert row["id"] == "Abyssinian_1.jpg" and row["target"] in (5, 7)
    assert "Oxford-IIIT Pet" in (tmp_path / "q" / "report.md").read_text()
    stored = json.loads((tmp_path / "q" / "config.json").read_text())
    assert "sha256" in stored["labels"] and stored["labels"].endswith("unmapped skip")


def test_a_method_that_cannot_run_at_the_layer_is_a_usage_error(tmp_path, patched, capsys):
    """explain() skips such a method by default; evaluate needs every method's maps, so it asks
    for strict results and stops with the engine's reason instead of a KeyError."""
    code = main([
        "evaluate", "--methods", "gradcam,cam", "--layers", "0", "--metrics", "energy",
        "--data", "builtin:2", "--out", str(tmp_path / "ev"), "--no-progress",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cam" in err and "internal error" not in err


def test_a_one_channel_model_with_the_preprocessing_options(tmp_path, monkeypatch, capsys):
    """evaluate takes --mean/--std/--input-size/--channels as explain does (issue 16.1)."""
    spec = ModelSpec(name="grey", input_size=(24, 24), class_names=[f"c{i}" for i in range(1000)])
    model = imagenet_sized()
    model[0] = torch.nn.Conv2d(1, 8, 3, padding=1)  # reads one channel; the spec still says RGB
    patch_loader(monkeypatch, model, spec)
    code = _run(
        tmp_path, "--data", "builtin:2", "--mean", "0.5", "--std", "0.25", "--input-size", "32"
    )
    assert code == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "ev" / "config.json").read_text())
    assert config["model_input"]["channels"] == 1
    assert config["model_input"]["mean"] == [0.5] and config["model_input"]["std"] == [0.25]
    assert config["model_input"]["input_size"] == [32, 32]
    rows = (tmp_path / "ev" / "results.jsonl").read_text().splitlines()
    assert len(rows) == 4  # two images, two methods


def test_default_methods_carry_randomcam_as_the_floor(tmp_path, patched) -> None:
    """Random-CAM is in the default leaderboard, last, marked as the floor and never best."""
    args = ["--data", "builtin:2", "--layers", "2", "--metrics", "energy,pointing"]
    assert main(["evaluate", *args, "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    data = json.loads((tmp_path / "d" / "results.json").read_text())
    board = list(data["leaderboard"])
    assert board == ["gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "randomcam"]
    assert data["baselines"] == ["randomcam"]
    report = (tmp_path / "d" / "report.md").read_text()
    assert "| randomcam \\(floor\\) |" in report
    assert "| gradcam |" in report and "gradcam \\(floor\\)" not in report
