"""The viewer's task views in a real browser (Debian's chromium through Playwright): a detector's
boxes are drawn, a click on one explains it, and a classifier shows its DFF concepts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from chromium import launch
from PIL import Image
from serve_process import serving
from task_models import tiny_detector

import camscope
from camscope.core.detection import DetectionTarget
from camscope.io import preprocess

TESTS = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

PIXELS = """(selector) => {
  const c = document.querySelector(selector);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sq = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) { const v = d[i] + d[i + 1] + d[i + 2]; sum += v; sq += v * v; n++; }
  return {mean: sum / n, std: Math.sqrt(sq / n - (sum / n) ** 2), first: Array.from(d.slice(0, 64))};
}"""


@pytest.fixture
def server():
    """`camscope serve` with the tiny detector (the default) and the offline classifier."""
    with serving("--model", f"{TESTS / 'task_models.py'}:tiny_detector") as url:
        yield url


def _innermost(boxes: list[list[float]], x: float, y: float) -> int:
    inside = [k for k, b in enumerate(boxes) if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
    return min(inside, key=lambda k: (boxes[k][2] - boxes[k][0]) * (boxes[k][3] - boxes[k][1]))


def test_click_a_box_and_see_its_map(server, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(2)
    photo = tmp_path / "street.png"
    Image.fromarray(rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)).save(photo)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server)
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        page.set_input_files("#file", str(photo))
        page.wait_for_function(
            "Number(document.querySelector('#task-canvas')?.dataset.boxCount || 0) > 0",
            timeout=60_000,
        )
        boxes = json.loads(page.get_attribute("#task-canvas", "data-boxes") or "[]")
        page.wait_for_selector("canvas[data-task-method='gradcam']", timeout=60_000)
        first = page.evaluate(PIXELS, "canvas[data-task-method='gradcam']")
        # click the middle of the last box: the page explains the innermost box there
        pick = boxes[-1]
        cx, cy = (pick[0] + pick[2]) / 2, (pick[1] + pick[3]) / 2
        expected = _innermost(boxes, cx, cy)
        frame = page.locator("#task-canvas").bounding_box()
        assert frame is not None
        scale = frame["width"] / 160
        page.mouse.click(frame["x"] + cx * scale, frame["y"] + cy * scale)
        page.wait_for_function(
            f"document.querySelector('#task-maps').dataset.box === '{expected}'", timeout=60_000
        )
        page.wait_for_selector("canvas[data-task-method='gradcam']", timeout=60_000)
        clicked = page.evaluate(PIXELS, "canvas[data-task-method='gradcam']")
        assert clicked["std"] > 5, "the map is drawn, not blank"
        assert f"box {expected}: cat" in page.inner_text("#task-caption")
        # the server explained the detection that was clicked
        explained = json.loads(page.get_attribute("#task-maps", "data-explained") or "[]")
        np.testing.assert_allclose(explained, boxes[expected], atol=0.05)
        if expected != 0:
            assert clicked["first"] != first["first"]  # another box, another map

        # the offline classifier offers DFF's concepts
        page.select_option("#model", "efficientnet_lite0")
        page.wait_for_selector("#concepts-button", state="visible", timeout=60_000)
        page.wait_for_selector("canvas[data-method='gradcam']", timeout=60_000)
        page.click("#concepts-button")
        page.wait_for_selector("canvas[data-concept='4']", timeout=60_000)
        assert page.locator("#concepts .concept-class").count() == 15  # 5 concepts x 3 classes
        assert not errors, errors
        browser.close()

    # the box the page explained is the library's: its map for the same image and box
    model, spec = tiny_detector()
    x = preprocess(Image.open(photo).convert("RGB"), spec)
    box = torch.tensor([boxes[expected]]) * torch.tensor([64 / 160, 64 / 120, 64 / 160, 64 / 120])
    res = camscope.explain(model, x, "gradcam", targets=DetectionTarget(boxes=box))
    assert res.maps["gradcam"].shape == (1, 1, 64, 64)
