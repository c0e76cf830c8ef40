"""The viewer's routes for detectors, segmentation models, similarity and DFF concepts: their
answers equal what the library gives for the same image."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from nets import SmallNet
from PIL import Image
from task_models import tiny_detector, tiny_segmenter

import camscope
from camscope.core.detection import DetectionTarget, detect
from camscope.core.segmentation import SegmentationTarget, class_fractions
from camscope.core.similarity import SimilarityTarget, embed
from camscope.io import load_image_bytes, load_mask, preprocess
from camscope.methods.dff import concepts
from camscope.models import ModelSpec
from camscope.serve.viewer.app import ServeConfig, create_app
from camscope.serve.viewer.encode import map_from_base64
from camscope.serve.viewer.pool import ModelPool

CLASSES = ["a", "b", "c", "d", "e"]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    classifier = SmallNet().eval()
    spec = ModelSpec("small", input_size=(32, 32), class_names=CLASSES)
    return {"det": tiny_detector(), "seg": tiny_segmenter(), "cls": (classifier, spec)}


@pytest.fixture(scope="module")
def client(models) -> TestClient:
    return TestClient(create_app(ServeConfig(allow_url=False), pool=ModelPool.of_loaded(models)))


@pytest.fixture(scope="module")
def photo() -> bytes:
    rng = np.random.default_rng(5)
    return png(rng.integers(0, 256, size=(48, 80, 3), dtype=np.uint8))


def call(client: TestClient, route: str, photo: bytes, files: dict | None = None, **fields):
    uploads = {"image": ("p.png", photo, "image/png"), **(files or {})}
    return client.post(route, files=uploads, data=fields)


def test_models_say_their_task(client) -> None:
    for name in ("det", "seg", "cls"):  # loaded on first use (here: their class names)
        assert client.get(f"/api/classes?model={name}").status_code == 200
    tasks = {m["name"]: m.get("task") for m in client.get("/api/models").json()}
    assert tasks == {"det": "detection", "seg": "segmentation", "cls": "classification"}


def test_detect_then_explain_the_clicked_box(client, models, photo) -> None:
    model, spec = models["det"]
    reply = call(client, "/api/detect", photo, model="det", threshold="0.5")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["image_size"] == [80, 48]
    x = preprocess(load_image_bytes(photo), spec)
    (found,) = detect(model, x)
    scale = torch.tensor([80 / 64, 48 / 64, 80 / 64, 48 / 64])
    assert len(body["boxes"]) == int((found.scores >= 0.5).sum()) >= 1
    for entry, box, score in zip(body["boxes"], found.boxes * scale, found.scores):
        np.testing.assert_allclose(entry["box"], box.numpy(), atol=0.01)
        assert entry["label"] == "cat" and entry["score"] == pytest.approx(float(score), abs=1e-5)
    clicked = body["boxes"][0]
    box = ",".join(str(v) for v in clicked["box"])
    reply = call(client, "/api/explain-task", photo, model="det", methods="gradcam", box=box)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    (entry,) = answer["targets"]
    assert entry["label"] == "cat" and entry["box"] == pytest.approx(clicked["box"], abs=0.05)
    ours = map_from_base64(answer["maps"]["gradcam"]["map"], answer["maps"]["gradcam"]["shape"])
    target = DetectionTarget(boxes=torch.tensor([clicked["box"]]) / scale)
    ref = camscope.explain(model, x, "gradcam", targets=target)
    np.testing.assert_allclose(ours.reshape(64, 64), ref.maps["gradcam"][0, 0], atol=2e-3)
    none = call(client, "/api/detect", photo, model="det", threshold="1.0").json()
    assert none["boxes"] == []


def test_segmentation_class_in_a_painted_region(client, models, photo) -> None:
    model, spec = models["seg"]
    x = preprocess(load_image_bytes(photo), spec)
    reply = call(client, "/api/segment-classes", photo, model="seg")
    assert reply.status_code == 200, reply.text
    classes = reply.json()["classes"]
    fractions = class_fractions(model, x)[0]
    assert classes[0]["fraction"] == pytest.approx(float(fractions.max()), abs=1e-6)
    assert sum(c["fraction"] for c in classes) == pytest.approx(1.0, abs=1e-4)
    paint = np.zeros((48, 80, 4), dtype=np.uint8)
    paint[10:30, 20:60] = (255, 0, 0, 255)  # a stroke on a transparent canvas
    region = {"region": ("region.png", png(paint), "image/png")}
    reply = call(
        client,
        "/api/explain-task",
        photo,
        region,
        model="seg",
        methods="gradcam",
        **{"class": "15"},
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["targets"][0]["label"] == "person" and answer["targets"][0]["region"] == "mask"
    mask = torch.from_numpy(load_mask(png(paint), (64, 64)))
    ref = camscope.explain(model, x, "gradcam", targets=SegmentationTarget(15, mask))
    ours = map_from_base64(answer["maps"]["gradcam"]["map"], answer["maps"]["gradcam"]["shape"])
    np.testing.assert_allclose(ours, ref.maps["gradcam"][0], atol=2e-3)
    assert answer["targets"][0]["score"] == pytest.approx(float(ref.scores[0]), rel=1e-4)


def test_similarity_to_an_uploaded_reference_and_concepts(client, models, photo) -> None:
    model, spec = models["cls"]
    rng = np.random.default_rng(9)
    other = png(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8))
    files = {"reference": ("other.png", other, "image/png")}
    reply = call(client, "/api/explain-task", photo, files, model="cls", task="similarity")
    assert reply.status_code == 200, reply.text
    entry = reply.json()["targets"][0]
    x = preprocess(load_image_bytes(photo), spec)
    ref = embed(model, preprocess(load_image_bytes(other), spec))
    res = camscope.explain(model, x, "gradcam", targets=SimilarityTarget(ref[0]))
    assert entry["score"] == pytest.approx(float(res.scores[0]), abs=1e-5)
    assert entry["reference"] == "other.png"
    reply = call(client, "/api/concepts", photo, model="cls", num_concepts="3")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    (found,) = concepts(model, x, "auto", num_concepts=3)
    assert body["layer"] == found.layer and len(body["concepts"]) == 3
    for got, ids in zip(body["concepts"], found.top_classes.tolist()):
        assert [c["class"] for c in got["top"]] == ids
        assert got["shape"] == list(found.maps.shape[1:])


@pytest.mark.parametrize(
    ("route", "fields", "message"),
    [
        ("/api/detect", {"model": "seg"}, "not a detector"),
        ("/api/detect", {"model": "det", "threshold": "2"}, "between 0 and 1"),
        ("/api/explain-task", {"model": "det", "box": "5,5,1"}, "x0 < x1"),
        ("/api/explain-task", {"model": "cls"}, "use POST /api/explain"),
        ("/api/explain-task", {"model": "seg"}, "needs --class"),
        ("/api/segment-classes", {"model": "det"}, "not a segmentation model"),
        ("/api/concepts", {"model": "det"}, "for classifiers"),
        ("/api/concepts", {"model": "cls", "num_concepts": "40"}, "num_concepts must be"),
    ],
)
def test_bad_requests_are_answered_400(client, photo, route, fields, message) -> None:
    reply = call(client, route, photo, **fields)
    assert reply.status_code == 400 and message in reply.json()["detail"], reply.text
