"""``camscope embed`` end to end: two separable classes part at the last layer, not at the input."""

from __future__ import annotations

import json

import heads
import numpy as np
import pytest
import torch
from chromium import launch
from cli_helpers import patch_loader
from nets import hook_counts
from PIL import Image
from torch import nn

from camscope.cli.main import main
from camscope.models import ModelSpec

CLASSES = ["horizontal", "vertical"]


def _bar_image(rng: np.random.Generator, vertical: bool) -> np.ndarray:
    """A bright 4 x 20 bar on grey noise: both classes have the same mean colour."""
    image = rng.integers(60, 120, (32, 32, 3)).astype(np.uint8)
    a, b = (int(v) for v in rng.integers(2, 10, size=2))
    if vertical:
        image[b : b + 20, a : a + 4] = 250
    else:
        image[a : a + 4, b : b + 20] = 250
    return image


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return (x - 0.5) / 0.5


@pytest.fixture(scope="module")
def bar_model() -> nn.Module:
    """A small CNN trained in a few Adam steps to tell the bars apart."""
    rng = np.random.default_rng(1)
    labels = [i % 2 for i in range(96)]
    x = _to_tensor([_bar_image(rng, bool(v)) for v in labels])
    y = torch.tensor(labels)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture
def patched(monkeypatch, bar_model):
    spec = ModelSpec("bars", input_size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3,
                     class_names=CLASSES)  # fmt: skip
    patch_loader(monkeypatch, bar_model, spec)
    return bar_model


def _write(root, per_class: int = 10, names=CLASSES):
    rng = np.random.default_rng(7)
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(_bar_image(rng, k == 1)).save(root / name / f"{i}.png")
    return root


def test_separation_grows_from_the_input_to_the_last_layer(tmp_path, patched, capsys):
    data = _write(tmp_path / "bars")
    out = tmp_path / "embed"
    code = main(["embed", "--data", str(data), "--out", str(out), "--no-progress",
                 "--layers", "last,input,first", "--batch-size", "8"])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "embeddings.json").read_text())
    assert list(doc["layers"]) == ["input", "0", "4"]  # depth order, whatever the order asked
    first, last = doc["layers"]["input"], doc["layers"]["4"]
    assert last["silhouette"] > first["silhouette"] + 0.3
    assert last["knn_accuracy"] >= 0.9 > first["knn_accuracy"]
    assert first["dims"] == 3 and last["dims"] == 16
    assert len(last["points"]) == 20 == len(doc["images"])
    assert {i["class"] for i in doc["images"]} == set(CLASSES)
    # the trained model tells the bars apart, and "correct" says whether it did
    assert all(i["correct"] == (i["predicted"] == i["class"]) for i in doc["images"])
    assert sum(i["correct"] for i in doc["images"]) >= 18
    assert all(0.5 <= i["probability"] <= 1 for i in doc["images"])
    for layer in doc["layers"].values():
        assert (out / layer["figure"]).is_file()
        assert len(layer["explained_variance"]) == 2
    html = (out / "embeddings.html").read_text()
    assert html.count("<svg") == 3 and html.count("data:image/jpeg;base64") == 20
    assert "silhouette per layer" in capsys.readouterr().out
    assert hook_counts(patched) == {}


def test_odd_names_are_escaped_and_a_broken_image_exits_1(tmp_path, patched, capsys):
    data = _write(tmp_path / "d", per_class=3, names=["<i>x", "vertical"])
    (data / "vertical" / "bad.png").write_bytes(b"")
    out = tmp_path / "e"
    code = main(["embed", "--data", str(data), "--out", str(out), "--no-progress",
                 "--layers", "4", "--thumbnails", "2"])  # fmt: skip
    assert code == 1 and "bad.png" in capsys.readouterr().err
    doc = json.loads((out / "embeddings.json").read_text())
    assert [f["id"] for f in doc["failed"]] == ["vertical/bad.png"]
    # a label that is no model class is kept, its images are not judged
    assert [i["correct"] for i in doc["images"] if i["class"] == "<i>x"] == [None] * 3
    html = (out / "embeddings.html").read_text()
    assert "<i>x" not in html and "&lt;i&gt;x" in html
    assert html.count("data:image/jpeg;base64") == 2


@pytest.mark.parametrize("name", ["yes", "no"])
def test_a_single_logit_model_is_read_as_a_binary_classifier(tmp_path, monkeypatch, name):
    """One logit near +5 says "yes" (class 1) on every image, near -5 "no" (class 0); the argmax
    over one column called every image "no"."""
    from camscope.io import preprocess

    model, spec = heads.load(name)
    patch_loader(monkeypatch, model, spec)
    rng = np.random.default_rng(3)
    for label in ("no", "yes"):
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "d" / label / f"{i}.png")
    out = tmp_path / "e"
    code = main(["embed", "--data", str(tmp_path / "d"), "--out", str(out), "--no-progress",
                 "--layers", "last"])  # fmt: skip
    assert code == 0
    said = 1 if name == "yes" else 0
    for image in json.loads((out / "embeddings.json").read_text())["images"]:
        with torch.no_grad():
            x = preprocess(Image.open(tmp_path / "d" / image["id"]), spec)
            p_yes = float(torch.sigmoid(model(x))[0, 0])
        assert image["predicted_class"] == said and image["predicted"] == spec.label(said)
        assert image["probability"] == pytest.approx(p_yes if said else 1 - p_yes, abs=1e-6)
        assert image["probability"] > 0.99 and image["correct"] == (image["class"] == name)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "nope"], "no layer named"),
        (["--layers", ","], "--layers is empty"),
        (["--projection", "umap", "--limit", "3"], "at least 4 images"),
        (["--data", "missing/dir"], "no such file"),
    ],
)
def test_usage_errors_exit_2(tmp_path, patched, capsys, args, message):
    data = _write(tmp_path / "d", per_class=2)
    assert main(["embed", "--data", str(data), "--out", str(tmp_path / "e"),
                 "--no-progress", *args]) == 2  # fmt: skip
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_umap_projection(tmp_path, patched):
    """umap-learn compiles with numba on first use (about 15 s of CPU)."""
    data = _write(tmp_path / "d", per_class=6)
    out = tmp_path / "u"
    code = main(["embed", "--data", str(data), "--out", str(out), "--no-progress",
                 "--layers", "input,4", "--projection", "umap"])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "embeddings.json").read_text())
    assert doc["projection"] == "umap"
    points = np.asarray(doc["layers"]["4"]["points"])
    assert points.shape == (12, 2) and np.isfinite(points).all() and points.std(0).min() > 0
    assert doc["layers"]["4"]["explained_variance"] is None


def test_the_html_shows_a_thumbnail_on_hover(tmp_path, patched):
    from playwright.sync_api import sync_playwright

    data = _write(tmp_path / "d", per_class=2, names=["<i>x", "vertical"])
    out = tmp_path / "e"
    assert main(["embed", "--data", str(data), "--out", str(out), "--no-progress",
                 "--layers", "input,4"]) == 0  # fmt: skip
    page_errors: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda err: page_errors.append(str(err)))
            page.goto((out / "embeddings.html").resolve().as_uri())
            assert page.locator("svg").count() == 2
            page.locator("g.pt").nth(0).hover()
            tip = page.locator("#tip")
            assert tip.is_visible() and tip.locator("img").count() == 1
            assert tip.inner_text().startswith("<i>x/0.png: <i>x")  # text, not markup
        finally:
            browser.close()
    assert page_errors == []
