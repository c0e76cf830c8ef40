"""One step of a data-set job (:class:`camscope.batch.rows.ExplainStep`): probabilities follow the
model's head (softmax, sigmoid for single-logit and multi-label heads), and a method that cannot
run at the layer stops the job instead of leaving its rows out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from image_folders import MODEL
from torch import nn

from camscope import io
from camscope.batch import DatasetJob, ModelRecipe, run_dataset_job
from camscope.batch.decode import DecodedBatch, DecodeSettings, collate, decode_one
from camscope.batch.rows import ExplainStep, MapSettings
from camscope.errors import UnsupportedModelError, UsageError
from camscope.models import ModelSpec, load_model

IDS = ["img002.png", "a/img001.jpg", "b/img003.jpg"]


def decoded(image_folder: Path, spec: ModelSpec) -> DecodedBatch:
    settings = DecodeSettings(spec, io.DEFAULT_MAX_PIXELS)
    return collate([decode_one(i, n, str(image_folder / n), settings) for i, n in enumerate(IDS)])


def test_multilabel_rows_hold_sigmoid_probabilities_and_top5(image_folder: Path) -> None:
    model, spec = load_model(MODEL)
    batch = decoded(image_folder, spec)
    settings = MapSettings(methods=("gradcam",), layers=("3",), multilabel=True)
    rows = ExplainStep(model, spec, settings, torch.device("cpu"))(batch).to_pylist()
    with torch.no_grad():
        sigmoid = model(batch.x).sigmoid()  # independent of camscope's head
    for i, row in enumerate(rows):
        values, classes = sigmoid[i].topk(5)
        assert row["target"] == int(classes[0])  # top1 of a multi-label head: highest logit
        assert row["probability"] == pytest.approx(float(values[0]), abs=1e-6)
        assert [t["class"] for t in row["top5"]] == classes.tolist()
        assert [t["probability"] for t in row["top5"]] == pytest.approx(values.tolist(), abs=1e-6)
    assert sum(t["probability"] for t in rows[0]["top5"]) > 1.0  # not a softmax


def single_logit() -> tuple[nn.Module, ModelSpec]:
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 1),
    ).eval()
    spec = ModelSpec("binary", input_size=(32, 32), class_names=["negative", "positive"])
    return net, spec


def test_a_single_logit_model_stores_the_probability_of_the_class_it_explains(
    image_folder: Path,
) -> None:
    model, spec = single_logit()
    batch = decoded(image_folder, spec)
    step = ExplainStep(
        model, spec, MapSettings(methods=("gradcam",), layers=("1",)), batch.x.device
    )
    rows = step(batch).to_pylist()
    with torch.no_grad():
        p = model(batch.x)[:, 0].sigmoid()
    for i, row in enumerate(rows):
        positive = float(p[i]) >= 0.5
        assert row["target"] == int(positive)
        assert row["label"] == ("positive" if positive else "negative")
        expected = float(p[i]) if positive else 1 - float(p[i])
        assert row["probability"] == pytest.approx(expected, abs=1e-6)
        assert [t["class"] for t in row["top5"]] == [int(positive), int(not positive)]
        assert sum(t["probability"] for t in row["top5"]) == pytest.approx(1.0, abs=1e-6)


def test_a_method_that_cannot_run_at_the_layer_stops_the_job_before_any_commit(
    image_folder: Path, tmp_path: Path
) -> None:
    model, spec = load_model(MODEL)
    # CAM weighs the layer's channels by the classifier: 8 channels at '1', the classifier has 12
    settings = MapSettings(methods=("gradcam", "cam"), layers=("1",))
    with pytest.raises(UnsupportedModelError, match="classifier expects 12"):
        ExplainStep(model, spec, settings, torch.device("cpu"))(decoded(image_folder, spec))
    job = DatasetJob(
        image_folder,
        tmp_path,
        model=ModelRecipe(MODEL),
        methods=("gradcam", "cam"),
        layers=("1",),
        batch_size=4,
        decode_workers=0,
    )
    with pytest.raises(UnsupportedModelError, match="classifier expects 12"):
        run_dataset_job(job)
    assert not list(tmp_path.glob("maps-*.parquet"))
    with pytest.raises(UsageError, match="mode must be one of"):
        run_dataset_job(DatasetJob(image_folder, tmp_path / "x", mode="train"))


@pytest.mark.parametrize("map_size", [None, (5, 6)])
def test_aug_smooth_stores_the_smoothed_map(
    image_folder: Path, map_size: tuple[int, int] | None
) -> None:
    """The raw maps come from the unaugmented pass (core.smoothing), so an --aug-smooth job that
    stored them would pay four passes for the plain map: it stores the smoothed one."""
    import torch.nn.functional as F

    import camscope

    model, spec = load_model(MODEL)
    batch = decoded(image_folder, spec)
    settings = MapSettings(methods=("gradcam",), layers=("3",), aug_smooth=True, map_size=map_size)
    rows = ExplainStep(model, spec, settings, torch.device("cpu"))(batch).to_pylist()
    plain = camscope.explain(model, batch.x, "gradcam", layer="3")
    smooth = camscope.explain(model, batch.x, "gradcam", layer="3", aug_smooth=True)
    size = map_size or tuple(plain.raw["gradcam"].shape[-2:])
    expected = F.interpolate(
        smooth.maps["gradcam"][:, None], size=size, mode="bilinear", antialias=True
    )[:, 0]
    for i, row in enumerate(rows):
        stored = torch.tensor(row["map"], dtype=torch.float32).reshape(row["map_shape"])
        assert row["map_shape"] == list(size)
        torch.testing.assert_close(stored * row["map_scale"], expected[i], atol=2e-3, rtol=0)
        assert stored.min() >= 0  # a [0, 1] map, not the signed raw one


def test_an_aug_smooth_job_written_before_smoothed_maps_does_not_resume(
    image_folder: Path, tmp_path: Path
) -> None:
    import json

    from camscope.batch import open_maps

    job = DatasetJob(image_folder, tmp_path, model=ModelRecipe(MODEL), aug_smooth=True)
    run_dataset_job(job)
    assert all(
        float(r.map.min()) >= 0
        for i in open_maps(tmp_path).ids()
        for r in open_maps(tmp_path).records(i)
    )
    job_file = tmp_path / "_camscope" / "job.json"
    stored = json.loads(job_file.read_text())
    assert stored["aug_smooth_map"] == "smoothed"
    del stored["aug_smooth_map"]  # as a job of the plain raw maps wrote it
    job_file.write_text(json.dumps(stored))
    with pytest.raises(UsageError, match=r"settings differ.*aug_smooth_map: None -> 'smoothed'"):
        run_dataset_job(
            DatasetJob(
                image_folder, tmp_path, model=ModelRecipe(MODEL), aug_smooth=True, resume=True
            )
        )
