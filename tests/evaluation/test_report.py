"""The HTML report renders in headless Chromium with its table and images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from chromium import launch

from camscope.evaluation.registry import metric_column
from camscope.evaluation.report import leaderboard_rows, write_report


def _summary() -> dict:
    cols = ["loc_error_top1", "energy", "deletion"]
    return {
        "leaderboard": {
            "gradcam": {
                "loc_error_top1": {"mean": 40.0, "low": 16.8, "high": 68.7, "n": 10},
                "energy": {"mean": 60.0, "low": 57.0, "high": 63.0, "n": 10},
                "deletion": {"mean": 0.10, "low": 0.08, "high": 0.12, "n": 10},
            },
            "layercam": {
                "loc_error_top1": {"mean": 45.0, "low": 21.2, "high": 71.1, "n": 10},
                "energy": {"mean": 65.0, "low": math.nan, "high": math.nan, "n": 1},
                "deletion": {"mean": 0.12, "low": 0.10, "high": 0.14, "n": 10},
            },
        },
        "columns": cols,
        "column_info": {
            k: {
                "title": metric_column(k).title,
                "higher_is_better": metric_column(k).higher_is_better,
            }
            for k in cols
        },
        "curves": {
            "gradcam": {"deletion": [1.0, 0.5, 0.0]},
            "layercam": {"deletion": [1.0, 0.7, 0.1]},
        },
        "images": 10,
        "top1_accuracy": 70.0,
        "sanity": {
            "images": 2,
            "fail_below": 0.5,
            "layers": {
                "blocks.6": {
                    "steps": ["classifier", "blocks.6"],
                    "spearman": {"gradcam": [0.4, 0.1], "layercam": [0.9, 0.8]},
                    "ssim": {"gradcam": [0.5, 0.2], "layercam": [0.9, 0.85]},
                    "passed": {"gradcam": True, "layercam": False},
                }
            },
        },
    }


def _examples() -> dict:
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    heat = np.zeros((32, 32))
    heat[4:12, 4:12] = 1
    item = {
        "id": "x",
        "metric": "energy",
        "score": 12.0,
        "target": "tabby",
        "image": img,
        "map": heat,
        "boxes": [(2, 2, 14, 14)],
    }
    return {"gradcam": [item, {**item, "score": 90.0}]}


def test_leaderboard_marks_direction_and_best():
    header, body, flags = leaderboard_rows(_summary())
    assert header[1].endswith("↓") and header[2].endswith("↑")
    assert body[0][1] == "40.0 [16.8, 68.7]" and body[1][2] == "65.0"
    assert flags[0][1] and not flags[1][1]  # lower loc error wins
    assert flags[1][2] and not flags[0][2]  # higher energy wins


def test_markdown_report(tmp_path):
    html_path, md_path = write_report(tmp_path, _summary(), _examples(), title="t")
    md = md_path.read_text()
    assert "| **gradcam** |" not in md and "**40.0 [16.8, 68.7]**" in md
    assert (
        "figures/curves.png" in md and (tmp_path / "figures" / "curves.png").stat().st_size > 1000
    )
    assert "FAIL" in md
    assert 'src="data:image/png;base64,' in html_path.read_text()


def test_html_report_renders_in_headless_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    html_path, _ = write_report(tmp_path, _summary(), _examples(), title="camscope evaluate: test")
    # self-contained: no file references besides inline data
    text = html_path.read_text()
    assert "figures/" not in text and "http" not in text.replace("http-equiv", "")
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(Path(html_path).resolve().as_uri())
            assert page.title() == "camscope evaluate: test"
            rows = page.locator("#leaderboard tbody tr")
            assert rows.count() == 2
            assert rows.nth(0).locator("td").nth(0).inner_text() == "gradcam"
            headers = page.locator("#leaderboard th").all_inner_texts()
            assert headers[1] == "Top-1 loc. error % ↓"
            assert page.locator("#leaderboard td.best").count() == 3
            assert page.locator("#sanity tr").count() == 3
            widths = page.eval_on_selector_all(
                "img", "els => els.map(e => e.complete ? e.naturalWidth : 0)"
            )
            # curves + 3 bar charts + sanity + one example grid, all decoded
            assert len(widths) == 6 and all(w > 100 for w in widths)
        finally:
            browser.close()


def test_error_bars_are_the_asymmetric_interval():
    from camscope.evaluation.report import error_bars

    below, above = error_bars(_summary(), "loc_error_top1")
    assert below == pytest.approx([40.0 - 16.8, 45.0 - 21.2])
    assert above == pytest.approx([68.7 - 40.0, 71.1 - 45.0])
    below, above = error_bars(_summary(), "energy")  # no interval at n = 1: no bar
    assert below[1] == 0.0 and above[1] == 0.0


def test_report_has_a_verdict_and_bolds_ties(tmp_path):
    summary = _summary()
    summary["leaderboard"]["layercam"]["deletion"]["mean"] = 0.1000004  # prints as 0.100
    _, _, flags = leaderboard_rows(summary)
    assert flags[0][3] and flags[1][3]
    html_path, md_path = write_report(tmp_path, summary, None, title="t")
    md = md_path.read_text()
    assert "## Verdict for this model and data" in md
    assert "Localizes best (Energy pointing % ↑): no clear winner" in md.replace("\\", "")
    assert "Fails the sanity check at blocks.6: layercam" in md
    assert "<ul id='verdict'>" in html_path.read_text()


def test_markdown_report_escapes_user_text(tmp_path):
    """A model name or --data path cannot inject markup or links into report.md (issue 15.13)."""
    model = "net*bold* [click](http://x.example) <script>alert(1)</script>"
    data = "/data/a_b_/[x](javascript:y)\nsecond line"
    _, md_path = write_report(tmp_path, _summary(), _examples(), title=model, notes=[data])
    md = md_path.read_text()
    assert "<script>" not in md and "[click](http" not in md and "[x](javascript" not in md
    assert r"net\*bold\* \[click\]\(http://x.example\) &lt;script&gt;" in md
    assert r"/data/a\_b\_/\[x\]\(javascript:y\) second line" in md


def test_a_missing_chromium_fails_the_browser_tests(monkeypatch) -> None:
    """A browser test without its browser fails, saying how to install it; it never skips."""
    import chromium

    monkeypatch.setattr(chromium, "CHROMIUM", "/no/such/chromium")
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        chromium.launch(None)


@pytest.mark.parametrize("sanity", [True, False])
def test_a_summary_read_back_from_results_json_gives_the_same_report(tmp_path, sanity):
    """results.json stores NaN as null; write_report is documented to take that summary too."""
    import json

    from camscope.outputs import write_json

    summary = _summary()
    summary["top1_accuracy"] = None  # no labelled image: "n/a" (None in memory as in the file)
    if sanity:
        summary["sanity"]["layers"]["blocks.6"]["ssim"]["gradcam"][1] = math.nan
    else:
        summary["sanity"] = None  # --sanity not asked
    summary["curves"]["layercam"]["deletion"][1] = math.nan
    write_json(tmp_path / "results.json", summary)
    read_back = json.loads((tmp_path / "results.json").read_text())
    assert read_back["leaderboard"]["layercam"]["energy"]["low"] is None
    _, direct = write_report(tmp_path / "direct", summary, None, title="t")
    _, again = write_report(tmp_path / "again", read_back, None, title="t")
    assert again.read_text() == direct.read_text()


def test_a_run_without_the_sanity_metric_or_an_accuracy_writes_its_report(tmp_path):
    """evaluate stores sanity = None and top1_accuracy = None when they were not measured."""
    summary = _summary()
    summary["sanity"] = None
    summary["top1_accuracy"] = None
    html, md = write_report(tmp_path, summary, None, title="t")
    text = md.read_text()
    assert "model top-1 accuracy on them: n/a" in text
    assert "Randomization cascade" not in text and "nan%" not in text
    assert not (tmp_path / "figures" / "sanity.png").exists()
    assert html.exists()
