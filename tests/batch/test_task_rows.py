"""Data-set jobs of detectors and segmentation models: one row per box (its box, label, score and
map), equal to what the library gives for the same image; the schema only grows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from task_models import tiny_detector, tiny_segmenter

import camscope
from camscope import io
from camscope.batch import DatasetJob, open_maps, run_dataset_job
from camscope.batch import parquet as store
from camscope.core.detection import DetectionTarget
from camscope.core.segmentation import SegmentationTarget
from camscope.errors import UsageError
from camscope.tasks import TaskRequest

METHODS = ("gradcam", "eigencam")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i, size in enumerate([(80, 64), (64, 96), (70, 70)]):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    return folder


def _job(folder: Path, out: Path, task: TaskRequest, **options: object) -> DatasetJob:
    base: dict[str, object] = {"methods": METHODS, "batch_size": 2, "decode_workers": 0}
    base.update(options)
    return DatasetJob(folder, out, task=task, **base)  # type: ignore[arg-type]


def test_one_row_per_box_equal_to_the_library(photos: Path, tmp_path: Path) -> None:
    model, spec = tiny_detector()
    result = run_dataset_job(
        _job(photos, tmp_path, TaskRequest(box_threshold=0.5)), loaded=(model, spec)
    )
    assert result.exit_code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["task"]["task"] == "detection" and summary["task"]["box_threshold"] == 0.5
    table = pq.read_table(sorted(tmp_path.glob("maps-*.parquet")))
    assert {"score", "object_box"} <= set(table.column_names)
    maps = open_maps(tmp_path)
    for name in ("p0.png", "p1.png"):
        image = io.load_image(photos / name)
        x = io.preprocess(image, spec)
        target = DetectionTarget(score_threshold=0.5)
        ref = camscope.explain(model, x, list(METHODS), targets=target)
        assert target.explained is not None
        found = target.explained[0]
        records = maps.records(name, "gradcam")
        assert [r.rank for r in records] == list(range(len(found)))
        sx, sy = image.width / 64, image.height / 64
        for k, record in enumerate(records):
            assert record.label == "cat" and record.target == 1 and record.probability is None
            assert record.score == pytest.approx(float(found.scores[k]), abs=1e-5)
            expected = found.boxes[k].numpy() * np.array([sx, sy, sx, sy])
            np.testing.assert_allclose(record.object_box, expected, atol=0.05)
            raw = ref.raw["gradcam"][0, k].numpy()
            peak = np.abs(raw).max()
            np.testing.assert_allclose(record.map, raw, atol=peak * 2.0**-11, rtol=0)
    # resuming with other task settings would mix two jobs' rows
    with pytest.raises(UsageError, match="task"):
        run_dataset_job(
            _job(photos, tmp_path, TaskRequest(box_threshold=0.4), resume=True),
            loaded=(model, spec),
        )


def test_nothing_to_explain_is_listed_with_the_reason(photos: Path, tmp_path: Path) -> None:
    model, spec = tiny_detector()
    job = _job(photos, tmp_path, TaskRequest(box_threshold=1.0), methods=("gradcam",))
    result = run_dataset_job(job, loaded=(model, spec))
    assert result.exit_code == 1
    errors = pq.read_table(tmp_path / "errors.parquet").to_pylist()
    assert len(errors) == 3
    assert all(e["reason"].startswith("nothing to explain: no detection scores 1") for e in errors)


def test_segmentation_rows_and_classification_schema_unchanged(
    photos: Path, tmp_path: Path
) -> None:
    model, spec = tiny_segmenter()
    task = TaskRequest(class_name="person", region=None)
    with pytest.raises(UsageError, match="does not take --save-png"):
        run_dataset_job(_job(photos, tmp_path / "png", task, save_png=True), loaded=(model, spec))
    region = np.zeros((64, 64), dtype=np.uint8)
    region[8:40, 8:56] = 255
    Image.fromarray(region).save(tmp_path / "region.png")
    task = TaskRequest(class_name="person", region=str(tmp_path / "region.png"))
    out = tmp_path / "seg"
    run_dataset_job(_job(photos, out, task, methods=("gradcam",)), loaded=(model, spec))
    record = open_maps(out).get("p2.png", "gradcam")
    x = io.preprocess(io.load_image(photos / "p2.png"), spec)
    mask = torch.from_numpy(region > 0)
    ref = camscope.explain(model, x, "gradcam", targets=SegmentationTarget(15, mask))
    assert record.label == "person" and record.target == 15 and record.object_box is None
    assert record.score == pytest.approx(float(ref.scores[0]), rel=1e-4)
    raw = ref.raw["gradcam"][0].numpy()
    np.testing.assert_allclose(record.map, raw, atol=np.abs(raw).max() * 2.0**-11, rtol=0)
    # the schema of a classification job is the one jobs had before tasks
    assert "score" not in store.map_schema().names
    assert store.map_schema(task="segmentation").names == [*store.map_schema().names, "score"]
    assert store.map_schema(task="detection").names[-2:] == ["score", "object_box"]
