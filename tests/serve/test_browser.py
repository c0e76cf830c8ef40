"""The viewer in a real browser: a `camscope serve` process on a free port, driven through Debian's
chromium with Playwright (never a downloaded browser).

Set CAMSCOPE_VIEWER_SCREENSHOT=path to keep the screenshot it takes (docs/images/viewer.png is made
this way by docs/images/make_viewer_screenshot.py).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from chromium import launch
from PIL import Image
from serve_process import serving

from camscope import explain
from camscope.data.inputs import demo_images
from camscope.io import preprocess, resize_map
from camscope.viz import overlay

pytestmark = pytest.mark.slow


@pytest.fixture
def server():
    """`camscope serve --port 0` in its own process; yields the address it prints."""
    with serving() as url:
        yield url


def test_api_docs_render_without_a_network(server) -> None:
    """/docs loaded Swagger UI from a CDN: offline the page stayed blank (issue 21, item 4).
    Every request that leaves this machine is aborted here; the operations must still render."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context()
        left: list[str] = []

        def local_only(route) -> None:
            host = urllib.parse.urlsplit(route.request.url).hostname
            if host in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                left.append(route.request.url)
                route.abort()

        context.route("**/*", local_only)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert {"/api/explain", "/api/methods", "/api/fetch"} <= {t.strip() for t in paths}
        page.locator(".opblock-summary", has_text="/api/explain").first.click()
        page.wait_for_selector(".opblock-body", timeout=10_000)
        assert "methods" in page.inner_text(".opblock-body")
        assert left == [] and not errors, (left, errors)
        browser.close()


PIXELS = """(selector) => {
  const c = document.querySelector(selector);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sq = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) { const v = d[i] + d[i + 1] + d[i + 2]; sum += v; sq += v * v; n++; }
  return {mean: sum / n, std: Math.sqrt(sq / n - (sum / n) ** 2), first: Array.from(d.slice(0, 64))};
}"""


def test_viewer_in_chromium(server, tmp_path, lite0) -> None:
    from playwright.sync_api import sync_playwright

    chelsea = demo_images()[0][1]
    upload = tmp_path / "chelsea.png"
    chelsea.save(upload)
    bad = tmp_path / "notes.jpg"
    bad.write_text("these are notes, not a photo\n", encoding="utf-8")
    methods = ["eigencam", "gradcam", "xgradcam"]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1360, "height": 860}, accept_downloads=True)
        errors: list[str] = []
        requests: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(server)
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        # the badges: cost classes and pass counts from the registry, for this model and layer
        page.wait_for_function(
            "document.querySelector('label[data-method=scorecam] .badge').textContent"
            ".includes('passes')",
            timeout=30_000,
        )
        assert page.inner_text("label[data-method=scorecam] .badge") == "1,281 passes"
        assert page.inner_text("label[data-method=fullgrad] .badge") == "2 passes"
        assert page.inner_text("label[data-method=attention-rollout] .badge") == "1 pass"
        assert page.inner_text("label[data-method=gradcam] .badge") == "one pass"
        assert "over" in (page.get_attribute("label[data-method=sscam]", "class") or "")
        assert "over" not in (page.get_attribute("label[data-method=scorecam]", "class") or "")
        for name in ("gradcam++", "layercam"):
            page.uncheck(f"#methods input[value='{name}']")
        for name in ("eigencam", "xgradcam"):
            page.check(f"#methods input[value='{name}']")
        page.set_input_files("#file", str(upload))
        for name in methods:
            page.wait_for_selector(f"canvas[data-method='{name}']", timeout=60_000)
        maps = [page.evaluate(PIXELS, f"canvas[data-method='{m}']") for m in methods]
        picture = page.evaluate(PIXELS, ".input-card canvas")
        for stats in maps:  # drawn, not blank, and not just the photo
            assert stats["std"] > 20 and stats["first"] != picture["first"]
        assert "Egyptian cat" in page.inner_text("#chips")

        before = len(requests)
        page.locator("#opacity").fill("0.9")
        moved = page.evaluate(PIXELS, "canvas[data-method='gradcam']")
        assert moved["first"] != maps[1]["first"] and len(requests) == before

        card = page.locator("figure", has=page.locator("canvas[data-method='gradcam']"))
        with page.expect_download() as info:
            card.locator("button[data-download='npy']").click()
        npy = tmp_path / "gradcam.npy"
        info.value.save_as(npy)
        assert info.value.suggested_filename == "chelsea.gradcam.npy"
        with page.expect_download() as info:
            card.locator("button[data-download='png']").click()
        png = tmp_path / "gradcam.png"
        info.value.save_as(png)

        with page.expect_download() as info:
            page.click("#dl-json")
        summary = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
        assert summary["targets"][0]["index"] == 285 and summary["opacity"] == 0.9
        assert [m["method"] for m in summary["rows"][0]["methods"]] == methods
        with page.expect_download() as info:
            page.click("#dl-grid")
        grid = Image.open(info.value.path())
        assert info.value.suggested_filename == "chelsea.grid.png" and grid.width > 4 * 320

        page.check("#compare")
        page.wait_for_function(
            "document.querySelectorAll('canvas[data-method]').length === 9", timeout=60_000
        )
        page.locator("#opacity").fill("0.55")
        page.evaluate("document.querySelector('.panel').scrollTop = 0")
        page.wait_for_timeout(300)
        shot = tmp_path / "viewer.png"
        page.screenshot(path=str(shot))

        page.set_input_files("#file", str(bad))
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        assert "not an image" in page.inner_text("#error")
        assert not errors, errors
        browser.close()
    with urllib.request.urlopen(server + "healthz", timeout=10) as reply:  # still serving
        assert reply.status == 200

    model, spec = lite0
    want = explain(model, preprocess(chelsea, spec), "gradcam").maps["gradcam"][0].numpy()
    got = np.load(npy)
    assert got.shape == (224, 224) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=5e-4)
    # the browser's overlay is the library's: same colour map, opacity and resize
    expected = np.asarray(overlay(chelsea, resize_map(got, (300, 451)), "inferno", 0.9), dtype=int)
    drawn = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    assert drawn.shape == expected.shape
    # within two levels: the page rounds each colour-table entry to 8 bits
    assert np.abs(drawn - expected).max() <= 2 and np.abs(drawn - expected).mean() < 0.5
    assert shot.stat().st_size > 50_000
    keep = os.environ.get("CAMSCOPE_VIEWER_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def test_study_page_in_chromium(tmp_path) -> None:
    """The study page opens a session, shows trials and records clicks (same-origin requests
    pass the server's rule; the page never sees method names or trial ids)."""
    from playwright.sync_api import sync_playwright

    folder = tmp_path / "study"
    study = ["--study", "class-discrimination", "--data", "builtin:12"]
    study += ["--methods", "gradcam,layercam", "--out", str(folder), "--seed", "1"]
    with serving(*study) as url:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            page.fill("#participant", "=cmd|' /C calc'!A0")
            page.click("#start-form button")
            for step in range(2):
                page.wait_for_selector(f"#progress-text:has-text('trial {step + 1} of 12')")
                page.wait_for_selector("#options button", timeout=60_000)
                text = page.content()
                assert "gradcam" not in text and "layercam" not in text
                page.locator("#options button").first.click()
            page.wait_for_selector("#progress-text:has-text('trial 3 of 12')", timeout=60_000)
            assert not errors, errors
            browser.close()
        with (folder / "answers.csv").open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["participant"] for r in rows] == ["'=cmd|' /C calc'!A0"] * 2  # text, no formula
        assert all(0 < int(r["ms"]) < 600_000 for r in rows)
        assert {r["method"] for r in rows} <= {"gradcam", "layercam"}
