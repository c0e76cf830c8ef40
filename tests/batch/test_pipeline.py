"""The local data-set job end to end on a small folder: rows equal to ``explain``'s own results,
weak labels equal to the evaluation's rule, broken files in errors.parquet, resume rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from image_folders import BROKEN, GOOD, MODEL

from camscope import explain, io
from camscope.batch import DatasetJob, ModelRecipe, open_maps, run_dataset_job
from camscope.batch.decode import DecodeSettings, collate, decode_one
from camscope.batch.rows import ExplainStep, MapSettings
from camscope.errors import UsageError
from camscope.metrics.localization import largest_component, threshold_mask, wsol_boxes
from camscope.models import load_model

METHODS = ("gradcam", "layercam")


def job(image_folder: Path, out: Path, **options: object) -> DatasetJob:
    base: dict[str, object] = {
        "model": ModelRecipe(MODEL),
        "methods": METHODS,
        "batch_size": 4,
        "shard_size": 5,
        "decode_workers": 1,
    }
    base.update(options)
    return DatasetJob(image_folder, out, **base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def finished(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("maps")
    result = run_dataset_job(job(image_folder, out, save_boxes=True, save_masks=True))
    assert result.exit_code == 1  # the broken files
    return out


def reference(image_folder: Path, id_: str, targets: object = "top1") -> tuple[object, object]:
    model, spec = load_model(MODEL)
    x = io.preprocess(io.load_image(image_folder / id_), spec)
    return explain(model, x, list(METHODS), "auto", targets), io.load_image(image_folder / id_)


def test_every_readable_image_has_one_row_per_method_and_broken_ones_are_errors(
    finished: Path,
) -> None:
    table = pq.read_table(sorted(finished.glob("maps-*.parquet")))
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == GOOD and len(ids) == GOOD * len(METHODS)
    assert all(ids.count(i) == len(METHODS) for i in set(ids))
    errors = {r["id"]: r["reason"] for r in pq.read_table(finished / "errors.parquet").to_pylist()}
    assert set(errors) == set(BROKEN)
    for name, word in BROKEN.items():
        assert word in errors[name].lower()
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["counts"] == {
        "inputs": GOOD + 3,
        "explained": GOOD,
        "failed": 3,
        "rows": GOOD * 2,
        "shards": 3,  # 12 inputs in shards of 5, the broken ones included
        "not_listed": 0,
    }
    assert {f["id"] for f in summary["failures"]} == set(BROKEN)
    assert summary["this_run"]["images_per_second"] > 0
    assert summary["input"]["root"] == str(Path(summary["input"]["listing"]))


def test_a_map_read_back_equals_explains_raw_map(finished: Path, image_folder: Path) -> None:
    maps = open_maps(finished)
    for id_ in ("a/img001.jpg", "b/img003.jpg", "img002.png"):
        result, image = reference(image_folder, id_)
        for method in METHODS:
            record = maps.get(id_, method)
            raw = result.raw[method][0].numpy()
            assert record.map.shape == raw.shape == (16, 16)
            peak = np.abs(raw).max()
            # float16 of raw / peak: within half a unit in the last place of 1.0 times the peak
            np.testing.assert_allclose(record.map, raw, atol=peak * 2.0**-11, rtol=0)
            assert record.target == int(result.targets[0])
            assert record.probability == pytest.approx(float(result.probabilities[0]), abs=1e-6)
            assert (record.width, record.height) == image.size
            assert record.top5[0]["class"] == record.target
            assert record.layer == result.layer and record.label == f"class{record.target}"
            heat = maps.heatmap(id_, method, size=(32, 32))
            np.testing.assert_allclose(heat, result.maps[method][0].numpy(), atol=2e-3)


def test_boxes_and_masks_follow_the_evaluations_rule(finished: Path, image_folder: Path) -> None:
    maps = open_maps(finished)
    id_ = "a/img004.png"
    result, image = reference(image_folder, id_)
    heat = result.maps["gradcam"]  # (1, 32, 32) at the model input's size
    box = wsol_boxes(heat, 0.15)[0]
    width, height = image.size
    expected = box * torch.tensor([width / 32, height / 32, width / 32, height / 32])
    record = maps.get(id_, "gradcam")
    np.testing.assert_allclose(record.box, expected.numpy(), rtol=1e-6)
    mask = largest_component(threshold_mask(heat, 0.15))[0].numpy()
    assert record.mask.shape == (32, 32) and mask.any()
    np.testing.assert_array_equal(record.mask, mask)


def test_top_k_targets_and_a_map_size_give_one_resized_row_per_class(
    image_folder: Path, tmp_path: Path
) -> None:
    run_dataset_job(job(image_folder, tmp_path, target="topk:2", map_size=(8, 6)))
    maps = open_maps(tmp_path)
    id_ = "img002.png"
    result, _ = reference(image_folder, id_, "top5")
    records = maps.records(id_, method="gradcam")
    assert [r.rank for r in records] == [0, 1]
    assert [r.target for r in records] == result.targets[0, :2].tolist()
    for k, record in enumerate(records):
        raw = result.raw["gradcam"][0, k][None, None]
        resized = F.interpolate(raw, size=(8, 6), mode="bilinear", align_corners=False)[0, 0]
        peak = resized.abs().max().item()
        np.testing.assert_allclose(record.map, resized.numpy(), atol=peak * 2.0**-11, rtol=0)


def test_resume_needs_the_flag_and_the_same_settings_and_skips_what_is_done(
    image_folder: Path, tmp_path: Path
) -> None:
    first = run_dataset_job(job(image_folder, tmp_path))
    assert first.summary["this_run"]["inputs"] == GOOD + 3
    with pytest.raises(UsageError, match="pass --resume"):
        run_dataset_job(job(image_folder, tmp_path))
    with pytest.raises(UsageError, match=r"settings differ.*methods"):
        run_dataset_job(job(image_folder, tmp_path, methods=("gradcam",), resume=True))
    again = run_dataset_job(job(image_folder, tmp_path, resume=True, batch_size=2))
    run = again.summary["this_run"]
    assert run["skipped_as_committed"] == GOOD
    assert run["inputs"] == 3 and run["failed"] == 3  # only the broken files are tried again
    assert again.summary["counts"]["explained"] == GOOD and again.exit_code == 1


def test_the_step_keeps_gradients_on_inside_no_grad_and_inference_mode(
    image_folder: Path,
) -> None:
    model, spec = load_model(MODEL)
    settings = MapSettings(methods=METHODS, layers=("3",))
    step = ExplainStep(model, spec, settings, torch.device("cpu"))
    decode = DecodeSettings(spec, io.DEFAULT_MAX_PIXELS)
    names = ["img002.png", "notes.jpg"]
    batch = collate([decode_one(i, n, str(image_folder / n), decode) for i, n in enumerate(names)])
    plain = step(batch)
    with torch.no_grad():
        quiet = step(batch)
    with torch.inference_mode():
        inferred = step(batch)
    errors = plain.column("_error").to_pylist()
    assert errors[:2] == [None, None] and "not an image" in errors[2]
    for other in (quiet, inferred):
        assert other.column("map").to_pylist() == plain.column("map").to_pylist()
    assert any(abs(v) > 0 for v in plain.column("map")[0].as_py())


def test_a_list_gives_its_own_ids(image_folder: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(
        f"id,path\ncat-1,{image_folder / 'img002.png'}\ncat-2,{image_folder / 'notes.jpg'}\n"
    )
    result = run_dataset_job(job(listing, tmp_path / "out"))
    maps = open_maps(tmp_path / "out")
    assert maps.ids() == ["cat-1"] and result.exit_code == 1
    assert maps.source("cat-1") == str(image_folder / "img002.png")
    assert maps.errors().column("id").to_pylist() == ["cat-2"]


def test_ctrl_c_commits_the_finished_batches_and_resume_does_the_rest(
    image_folder: Path, tmp_path: Path
) -> None:
    def interrupt(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_dataset_job(job(image_folder, tmp_path, shard_size=100), progress=interrupt)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["this_run"]["inputs"] == 4  # one batch, committed although the shard was short
    # what the job measured and ran with is in the summary of an interrupted run too
    assert summary["this_run"]["tuning"]["why"] and summary["this_run"]["batch_size"] == 4
    assert len(open_maps(tmp_path)) + summary["counts"]["failed"] == 4
    again = run_dataset_job(job(image_folder, tmp_path, resume=True))
    assert again.summary["counts"]["explained"] == GOOD


def test_a_job_that_stopped_before_its_first_commit_binds_nothing(
    image_folder: Path, tmp_path: Path
) -> None:
    def fail(done: int, total: int) -> None:
        raise RuntimeError("the machine went away")

    with pytest.raises(RuntimeError):
        run_dataset_job(job(image_folder, tmp_path, shard_size=100), progress=fail)
    assert (tmp_path / "_camscope" / "job.json").exists() and not list(tmp_path.glob("maps-*"))
    # Other settings, no --resume: nothing was committed, so nothing is refused.
    result = run_dataset_job(job(image_folder, tmp_path, methods=("gradcam",)))
    assert result.summary["counts"]["explained"] == GOOD
    with pytest.raises(UsageError, match="unknown method option"):
        run_dataset_job(job(image_folder, tmp_path / "x", method_options={"no_such": 1}))


def test_the_model_threads_are_set_for_the_job_and_restored(
    image_folder: Path, tmp_path: Path
) -> None:
    seen: list[int] = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_dataset_job(
            job(image_folder, tmp_path, torch_threads=1),
            progress=lambda done, total: seen.append(torch.get_num_threads()),
        )
        assert set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_library_callers_get_the_commands_policies(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_dataset_job settles what the command settles (issue 20, "Options once"): methods=all
    under the pass budget, a class name as the target, the preprocessing overrides and the torch
    threads (batch.tuning: a job too small to measure keeps the cores its decode workers leave),
    for a library caller as for the CLI."""
    import os

    from camscope.models import SpecOverrides

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    said: list[str] = []
    recipe = ModelRecipe(MODEL, overrides=SpecOverrides(input_size=(48, 48)))
    result = run_dataset_job(
        job(
            image_folder, tmp_path / "out", model=recipe, methods=("all",), pass_budget=20,
            target="class3", decode_workers=2,
        ),
        notes=said.append,
    )  # fmt: skip
    summary = result.summary
    # 12 channels at the last layer: Score-CAM 13 passes per image, SS-CAM 35 x 12 + 1 (over 20)
    assert "scorecam" in summary["methods"] and "sscam" not in summary["methods"]
    assert any(line.startswith("left out sscam: about 421 model passes") for line in said)
    assert summary["this_run"]["torch_threads"] == 6 - 2
    assert summary["spec"]["input_size"] == [48, 48]
    table = pq.read_table(sorted((tmp_path / "out").glob("maps-*.parquet")))
    assert set(table.column("target").to_pylist()) == {3}  # the class name was resolved


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_size", 0), ("shard_size", 0), ("torch_threads", 0), ("pass_budget", 0),
     ("decode_workers", -1)],
)  # fmt: skip
def test_a_library_callers_bad_numbers_are_named_before_anything_runs(
    image_folder: Path, tmp_path: Path, field: str, value: int
) -> None:
    """The command's argparse types refuse these; run_dataset_job says the same to a library
    caller, before the model loads or a file is written."""
    floor = "0 or more" if field == "decode_workers" else "at least 1"
    with pytest.raises(UsageError, match=rf"^{field} must be {floor}; got {value}$"):
        run_dataset_job(job(image_folder, tmp_path / "out", **{field: value}))
    assert not (tmp_path / "out").exists()
