"""``camscope explain DIR --format parquet`` and ``camscope maps``: the options reach the job,
mistakes are usage errors (exit 2), failed inputs give exit 1, overlays are exported by id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from image_folders import BROKEN, GOOD, MODEL, add_broken_files, make_images
from PIL import Image

from camscope.cli import main as cli


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = tmp_path_factory.mktemp("cli-images")
    make_images(images, GOOD)
    add_broken_files(images)
    return images


def explain(folder: Path, out: Path, *extra: str) -> int:
    args = ["explain", str(folder), "--format", "parquet", "--out", str(out), "--model", MODEL]
    return cli.main([*args, "--decode-workers", "0", *extra])


def test_a_folder_becomes_shards_with_the_options_given(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = explain(
        folder, out, "-m", "gradcam,layercam", "--target", "class3", "--map-size", "4,5",
        "--save-png", "--save-boxes", "--shard-size", "4",
    )  # fmt: skip
    assert code == 1  # the broken files
    stdout, stderr = capsys.readouterr()
    assert f"explained {GOOD} of {GOOD + 3} input(s) with gradcam, layercam" in stdout
    assert "3 failed" in stdout and "errors.parquet" in stdout
    assert all(f"skipped {name}" in stderr for name in BROKEN)
    table = pq.read_table(sorted(out.glob("maps-*.parquet")))
    assert set(table.column("target").to_pylist()) == {3}  # the class name was resolved
    assert set(map(tuple, table.column("map_shape").to_pylist())) == {(4, 5)}
    assert table.column("box").null_count == 0
    summary = json.loads((out / "summary.json").read_text())
    # not the pictures' --batch-size default: the tuner's, as 12 inputs are too few to measure
    assert summary["this_run"]["batch_size"] == 16
    assert summary["this_run"]["tuning"]["why"] == ["no probes: too few inputs"]
    assert summary["counts"]["shards"] == 3  # 12 inputs, 4 per shard
    overlay = Image.open(out / "png" / "a" / "img001.jpg.layercam.png")
    assert overlay.size == Image.open(folder / "a" / "img001.jpg").size


def test_maps_export_draws_overlays_of_the_ids_asked_for(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    explain(folder, out, "--batch-size", "3")
    assert json.loads((out / "summary.json").read_text())["this_run"]["batch_size"] == 3
    capsys.readouterr()
    code = cli.main(
        ["maps", "export", str(out), "--png", "--npy", "--ids", "b/img003.jpg", "img002.png"]
    )
    assert code == 0
    exported = out / "export"
    assert sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*.*")) == [
        "b/img003.jpg.gradcam.npy",
        "b/img003.jpg.gradcam.png",
        "img002.png.gradcam.npy",
        "img002.png.gradcam.png",
        "index.csv",
    ]
    index = (exported / "index.csv").read_text().splitlines()
    assert index[0] == "id,file,layer,method,target" and len(index) == 5
    assert index[1].startswith("b/img003.jpg,b/img003.jpg.gradcam.npy,")
    assert (
        Image.open(exported / "img002.png.gradcam.png").size
        == Image.open(folder / "img002.png").size
    )
    assert np.load(exported / "img002.png.gradcam.npy").shape == (16, 16)
    code = cli.main(["maps", "export", str(out), "--png", "--ids", "notes.jpg", "nope"])
    assert code == 1
    assert "failed in the job" in capsys.readouterr().err
    assert cli.main(["maps", "info", str(out)]) == 0
    assert f"{GOOD} image(s) with maps, 3 failed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--save-npy"], "--save-npy is for --format png"),
        (["--no-grid"], "--no-grid is for --format png"),
        (["--image-format", "jpg"], "--image-format is for --format png"),
        (["--num-workers", "2"], "need --backend ray"),
        (["--map-size", "0,3"], "expected H,W"),
        (["--target", "no such class"], "is not top1, top5"),
    ],
)
def test_mistakes_are_usage_errors(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert explain(folder, tmp_path / "out", *extra) == 2
    assert message in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("maps-*"))


def test_one_input_only_and_resume_rules(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["explain", str(folder), str(folder), "--format", "parquet", "--out", str(out)]
    assert cli.main(args) == 2
    assert "takes one folder or list file" in capsys.readouterr().err
    assert explain(folder, out) == 1
    assert explain(folder, out) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert explain(folder, out, "--resume") == 1
    assert "were already committed" in capsys.readouterr().out
    assert cli.main(["maps", "export", str(out), "--ids", "img002.png"]) == 2


def test_method_all_keeps_to_the_pass_budget_and_the_explain_mode_reaches_the_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    make_images(images, 2)
    code = explain(images, out, "-m", "all", "--pass-budget", "8", "--multilabel", "--as-is")
    assert code == 0
    err = capsys.readouterr().err
    table = pq.read_table(sorted(out.glob("maps-*.parquet")))
    stored = set(table.column("method").to_pylist())
    for slow in ("scorecam", "sscam", "iscam", "ablationcam"):
        assert f"left out {slow}: about" in err and slow not in stored
    summary = json.loads((out / "summary.json").read_text())
    assert "gradcam" in stored and stored == set(summary["methods"])
    assert summary["multilabel"] is True and summary["mode"] == "as-is"
    top5 = table.column("top5")[0].as_py()
    assert sum(t["probability"] for t in top5) > 1.0  # sigmoids, not a softmax


def test_preprocessing_overrides_reach_the_job(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("".join(f"kind {i}\n" for i in range(10)))
    out = tmp_path / "out"
    code = explain(folder, out, "--input-size", "48,48", "--class-names", str(names))
    assert code == 1  # the broken files
    table = pq.read_table(sorted(out.glob("maps-*.parquet")))
    # layer '3' halves the input: 24 x 24 at 48 px (16 x 16 at the model's own 32 px)
    assert set(map(tuple, table.column("map_shape").to_pylist())) == {(24, 24)}
    assert all(label.startswith("kind ") for label in table.column("label").to_pylist())
    settings = json.loads((out / "_camscope" / "job.json").read_text())
    assert settings["spec"]["input_size"] == [48, 48]


@pytest.mark.parametrize(
    "extra",
    [
        ["--resume"],
        ["--refresh-changed"],
        ["--backend", "ray"],
        ["--shard-size", "8"],
        ["--save-boxes"],
    ],
)
def test_data_set_options_need_the_parquet_format(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    args = ["explain", str(folder / "img002.png"), "--out", str(tmp_path), "--model", MODEL]
    assert cli.main([*args, *extra]) == 2
    assert f"{extra[0]} needs --format parquet" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_a_busy_out_is_said_before_the_model_loads(
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second Parquet job on the same --out is told at once that the folder is in use; the
    model (12 s for a large one) is never loaded (issue 21 #12)."""
    import threading

    from camscope import models
    from camscope.outputs import output_lock

    loads: list[str] = []
    monkeypatch.setattr(models.loading, "load_model", lambda name, **_: loads.append(name))
    out = tmp_path / "out"
    codes: list[int] = []
    with output_lock(out, "camscope explain"):  # the first job, still running
        second = threading.Thread(target=lambda: codes.append(explain(folder, out)))
        second.start()
        second.join(timeout=120)
    assert codes == [2] and loads == []
    assert "is in use by another camscope explain" in capsys.readouterr().err
