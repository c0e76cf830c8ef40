"""``camscope explain`` for detectors, segmentation and embedding models, and ``--concepts``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import SPEC, make_image, patch_loader, run, tiny_model
from PIL import Image
from task_models import tiny_detector, tiny_segmenter

import camscope
from camscope import io
from camscope.core.detection import DetectionTarget
from camscope.core.segmentation import SegmentationTarget
from camscope.core.similarity import SimilarityTarget, embed
from camscope.tasks import TaskRequest, prepare_task


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


@pytest.fixture
def detector(monkeypatch):
    model, spec = tiny_detector()
    patch_loader(monkeypatch, model, spec)
    return model, spec


def test_one_map_per_box_with_the_boxes_drawn(tmp_path, capsys, detector) -> None:
    model, spec = detector
    img = make_image(tmp_path / "street.png", size=(96, 80))
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys, "explain", str(img), "--box-threshold", "0.5", "-m", "gradcam,eigencam",
        "--save-npy", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    data = summary(out)
    assert data["task"] == "detection" and data["task_options"]["box_threshold"] == 0.5
    record = data["images"][0]
    boxes = record["targets"]
    # the library's own detections of the same input, scaled to the image's pixels
    x = io.preprocess(Image.open(img).convert("RGB"), spec)
    target = DetectionTarget(score_threshold=0.5)
    res = camscope.explain(model, x, "gradcam", targets=target)
    assert target.explained is not None
    found = target.explained[0]
    assert len(boxes) == len(found) >= 1
    scale = np.array([96 / 64, 80 / 64, 96 / 64, 80 / 64])
    for k, entry in enumerate(boxes):
        assert entry["label"] == spec.label(entry["class"]) == "cat"
        assert entry["score"] == pytest.approx(float(found.scores[k]), abs=1e-5)
        np.testing.assert_allclose(entry["box"], found.boxes[k].numpy() * scale, atol=0.02)
        assert f"street.gradcam.box{k}.png" in record["files"]
        saved = np.load(out / f"street.gradcam.box{k}.npy")
        np.testing.assert_allclose(saved, res.maps["gradcam"][0, k].numpy(), atol=1e-5)
    assert "street.boxes.png" in record["files"] and "street.eigencam.png" in record["files"]
    assert "street.grid.png" in record["files"]
    drawn = np.asarray(Image.open(out / "street.gradcam.box0.png"))
    assert drawn.shape == (80, 96, 3)
    assert "explained 1 of 1 image(s)" in stdout


def test_a_given_box_and_nothing_above_the_threshold(tmp_path, capsys, detector) -> None:
    img = make_image(tmp_path / "a.png", size=(64, 64))
    out = tmp_path / "given"
    code, _, err = run(capsys, "explain", str(img), "--out", str(out), "--box-threshold", "0.5")
    first = summary(out)["images"][0]["targets"][0]
    box = ",".join(str(v + 1) for v in first["box"])  # a drawn box near the first detection
    code, _, err = run(
        capsys, "explain", str(img), "--box", box, "--box-iou", "multiply", "--out", str(out)
    )
    assert code == 0, err
    (entry,) = summary(out)["images"][0]["targets"]
    assert entry["given_box"] == pytest.approx([v + 1 for v in first["box"]], abs=0.02)
    assert entry["target_score"] < entry["score"]  # times an IoU below 1
    code, _, err = run(capsys, "explain", str(img), "--box-threshold", "1.0", "--out", str(out))
    assert code == 0, err  # nothing to explain is not a failure
    record = summary(out)["images"][0]
    assert record["targets"] == [] and "scores 1 or more" in record["note"]
    assert "scores 1 or more" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--box", "0,0,5,5", "--task", "classification"], "--box is not for the classification"),
        (["--task", "segmentation"], "needs --class"),
        (["--task", "similarity"], "needs --reference"),
        (["--target", "top5"], "--target is for classifiers"),
        (["--aug-smooth"], "--aug-smooth flips"),
        (["--box", "5,5,1,1"], "X0 < X1"),
        (["--box-iou", "max"], "--box-iou must be one of none, multiply, add"),
        (["--concepts"], "--concepts names DFF's concepts by class"),
    ],
)
def test_options_of_another_task_are_refused(tmp_path, capsys, detector, argv, message) -> None:
    img = make_image(tmp_path / "a.png")
    code, _, err = run(capsys, "explain", str(img), "--out", str(tmp_path / "o"), *argv)
    assert code == 2 and message in err, err
    assert "Traceback" not in err


def test_a_classifier_refuses_task_options(tmp_path, capsys, monkeypatch) -> None:
    patch_loader(monkeypatch, tiny_model(), SPEC)
    img = make_image(tmp_path / "a.png")
    code, _, err = run(capsys, "explain", str(img), "--class", "dog", "--out", str(tmp_path))
    assert code == 2 and "--class is not for the classification task" in err


def test_uncached_pretrained_detector_is_refused(tmp_path, capsys, monkeypatch) -> None:
    import torch.hub

    from camscope.models import hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "hub_reachable", lambda url, timeout=3.0: False)
    img = make_image(tmp_path / "a.png")
    code, _, err = run(
        capsys, "explain", str(img), "--model", "fasterrcnn_resnet50_fpn", "--out", str(tmp_path)
    )
    assert code != 0 and "not in the local cache" in err and "--random-init" in err


def test_segmentation_class_in_a_painted_region(tmp_path, capsys, monkeypatch) -> None:
    model, spec = tiny_segmenter()
    patch_loader(monkeypatch, model, spec)
    img = make_image(tmp_path / "a.png", size=(80, 60))
    mask = np.zeros((60, 80), dtype=np.uint8)
    mask[10:40, 20:70] = 255
    Image.fromarray(mask).save(tmp_path / "region.png")
    out = tmp_path / "seg"
    code, _, err = run(
        capsys, "explain", str(img), "--class", "person", "--region", str(tmp_path / "region.png"),
        "--save-npy", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    (entry,) = summary(out)["images"][0]["targets"]
    assert entry["label"] == "person" and entry["class"] == 15 and entry["region"] == "mask"
    # the same map from the library: the region at the input's size (nearest neighbour)
    region = torch.from_numpy(io.load_mask(tmp_path / "region.png", (64, 64)))
    x = io.preprocess(Image.open(img).convert("RGB"), spec)
    res = camscope.explain(model, x, "gradcam", targets=SegmentationTarget(15, region))
    assert entry["score"] == pytest.approx(float(res.scores[0]), rel=1e-4)
    np.testing.assert_allclose(np.load(out / "a.gradcam.npy"), res.maps["gradcam"][0], atol=1e-5)
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(black)
    code, _, err = run(capsys, "explain", str(img), "--class", "person", "--region", str(black))
    assert code != 0 and "marks no pixel" in err


def test_similarity_to_reference_images(tmp_path, capsys, monkeypatch) -> None:
    model = tiny_model()
    patch_loader(monkeypatch, model, SPEC)
    a, b = make_image(tmp_path / "a.png"), make_image(tmp_path / "b.png", seed=3)
    out = tmp_path / "sim"
    code, _, err = run(
        capsys, "explain", str(a), "--task", "similarity", "--reference", str(b), "--out", str(out)
    )
    assert code == 0, err
    (entry,) = summary(out)["images"][0]["targets"]
    xa = io.preprocess(Image.open(a).convert("RGB"), SPEC)
    xb = io.preprocess(Image.open(b).convert("RGB"), SPEC)
    expected = torch.nn.functional.cosine_similarity(embed(model, xa), embed(model, xb))
    assert entry["score"] == pytest.approx(float(expected), abs=1e-5)
    assert entry["reference"] == "b.png"
    res = camscope.explain(model, xa, "gradcam", targets=SimilarityTarget(embed(model, xb)[0]))
    assert float(res.scores[0]) == pytest.approx(entry["score"], abs=1e-5)


def test_a_library_caller_may_name_references_by_path(tmp_path) -> None:
    model, b = tiny_model(), make_image(tmp_path / "b.png", seed=3)
    request = TaskRequest(task="similarity", references=(b,))  # type: ignore[arg-type]
    prepared = prepare_task(request, model, SPEC, torch.device("cpu"))
    assert prepared is not None and prepared.reference_names == ["b.png"]
    xb = io.preprocess(Image.open(b).convert("RGB"), SPEC)
    torch.testing.assert_close(prepared.references, embed(model, xb))


def test_concepts_picture_and_record(tmp_path, capsys, monkeypatch) -> None:
    from camscope.methods.dff import concepts

    model = tiny_model()
    patch_loader(monkeypatch, model, SPEC)
    img = make_image(tmp_path / "a.png")
    out = tmp_path / "dff"
    code, _, err = run(
        capsys, "explain", str(img), "-m", "dff", "--concepts", "-O", "num_concepts=3",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    record = summary(out)["images"][0]
    assert "a.concepts.png" in record["files"] and (out / "a.concepts.png").is_file()
    x = io.preprocess(Image.open(img).convert("RGB"), SPEC)
    (found,) = concepts(model, x, "auto", num_concepts=3, top=3)
    assert len(record["concepts"]) == 3
    for entry, ids in zip(record["concepts"], found.top_classes.tolist()):
        assert [c["class"] for c in entry["top"]] == ids
        assert entry["top"][0]["label"] == SPEC.label(ids[0])


def test_class_names_of_a_detector_are_its_classes(tmp_path, capsys, detector) -> None:
    """A detector's last linear layer is its box regression (4 x classes outputs): --class-names
    is checked against its classes."""
    img = make_image(tmp_path / "a.png")
    names = tmp_path / "names.txt"
    names.write_text("__background__\nkitten\npuppy\n", encoding="utf-8")
    out = tmp_path / "named"
    code, _, err = run(capsys, "explain", str(img), "--class-names", str(names), "--out", str(out))
    assert code == 0, err
    assert summary(out)["images"][0]["targets"][0]["label"] == "kitten"
    names.write_text("a\nb\n", encoding="utf-8")
    code, _, err = run(capsys, "explain", str(img), "--class-names", str(names), "--out", str(out))
    assert code == 2 and "has 2 names; the model has 3 outputs" in err
