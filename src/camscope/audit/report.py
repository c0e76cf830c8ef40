"""Files of ``camscope audit``: ``audit.json``, ``images.jsonl``, ``mean_map_<class>.png`` and a
self-contained ``report.html``.

``audit.json``::

    {"classes": {NAME: {"n", "accuracy", "object_energy", "hotspot_box", "hotspot_share",
                        "hotspot_hits", "flags"}},
     "flagged": [NAME, ...],
     "details": {NAME: {"mean_map", "box_coverage", "hotspot_energy", "hotspot_place",
                        "hotspot_images", "predicted_n", "object_energy_true",
                        "mask_energy"}},
     "settings": {...}, "images": N, "failed": [{"id", "reason"}], "skipped": [...]}

``hotspot_share`` is the hot spot box's share of the image area; ``hotspot_energy`` (in
``details``) the share of the mean map's energy inside it; ``hotspot_images`` the number of maps
it was found on (the images predicted as the class whose map has energy), ``predicted_n`` the
number of images predicted as the class; ``object_energy_true`` is the object energy of the true
class's map on the images labelled with the class (``object_energy`` is the predicted class's). Undefined numbers are ``null``.
A class the model never predicts has no hot spot (``null``) and no mean map file.
``images.jsonl`` has one line per image (class, prediction, probability to 6 decimals as every
command reports it, object energies, peak; other numbers to 4).
Class names become file names through :func:`camscope.data.inputs.safe_names` (letters, digits, ``. _ -``; unique);
``details[NAME]["mean_map"]`` says which file is whose. In the HTML every name is escaped and
every picture is embedded as a base64 ``data:`` URI, so the file can be mailed (the
``audit.html`` template, :func:`camscope.outputs.render_page`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data.inputs import safe_names
from ..outputs import encoded, finite, output_lock, render_page, write_atomic, write_json
from ..viz import colorize, overlay
from ..viz.boxes import CYAN, GREEN, Box, draw_boxes
from .hotspot import describe_place
from .run import AuditRun, Example


def audit_json(run: AuditRun, settings: Mapping[str, Any], files: Mapping[str, str]) -> dict:
    """The ``audit.json`` document (see the module docstring)."""
    details = {}
    for name, c in run.classes.items():
        details[name] = {
            "mean_map": files.get(name),
            "box_coverage": c.coverage,
            "hotspot_energy": c.hotspot.energy if c.hotspot else None,
            "hotspot_place": describe_place(c.hotspot.box) if c.hotspot else None,
            "hotspot_images": c.hotspot_images,
            **c.extra,
        }
    return finite(
        {
            "classes": {name: c.to_json() for name, c in run.classes.items()},
            "flagged": run.flagged,
            "details": details,
            "settings": dict(settings),
            "layer": run.layer,
            "images": len(run.records),
            "failed": [{"id": i, "reason": r} for i, r in run.failed],
            "skipped": [{"id": i, "reason": r} for i, r in run.skipped],
        },
        4,
    )


def mean_map_picture(
    mean_map: np.ndarray, box: tuple[float, ...] | None, side: int = 192
) -> Image.Image:
    """The mean map scaled to its maximum, coloured, enlarged to ``side`` px, hot spot in cyan."""
    m = np.asarray(mean_map, dtype=np.float64)
    m = m / m.max() if m.max() > 0 else m
    rgb = (colorize(m) * 255).round().astype(np.uint8)
    h, w = m.shape
    scale = max(1, side // max(h, w))
    picture = Image.fromarray(rgb).resize((w * scale, h * scale), Image.Resampling.NEAREST)
    if box is not None:
        x0, y0, x1, y1 = (v * s for v, s in zip(box, (picture.width, picture.height) * 2))
        picture = draw_boxes(picture, [Box((x0, y0, x1 - 1, y1 - 1))], colour=CYAN, width=2)
    return picture


def _example_row(example: Example) -> list[Image.Image]:
    base = Image.fromarray(example.image)
    pictures = []
    for heat in (example.true_map, example.predicted_map):
        pic = overlay(base, np.asarray(heat, dtype=np.float64), alpha=0.5)
        boxes = [Box((x0, y0, x1 - 1, y1 - 1)) for x0, y0, x1, y1 in example.boxes]
        pictures.append(draw_boxes(pic, boxes, colour=GREEN, width=1))
    return [base, *pictures]


def report_html(
    run: AuditRun, settings: Mapping[str, Any], pictures: Mapping[str, bytes], title: str
) -> str:
    """The self-contained HTML report (per-class table, mean maps, most affected images)."""
    hotspots = {
        name: f"{describe_place(c.hotspot.box)} [{', '.join(f'{v:.2f}' for v in c.hotspot.box)}]"
        if c.hotspot
        else "–"
        for name, c in run.classes.items()
    }
    examples = [
        (name, [(ex, [encoded(p) for p in _example_row(ex)]) for ex in items])
        for name, items in run.examples.items()
    ]
    return render_page(
        "audit.html",
        title=title,
        run=run,
        hotspots=hotspots,
        pictures=pictures,
        examples=examples,
        settings=json.dumps(finite(dict(settings), 4), ensure_ascii=False),
    )


def write_audit(
    run: AuditRun, out_dir: str | Path, settings: Mapping[str, Any], title: str = "camscope audit"
) -> dict[str, Path]:
    """Write every audit file into ``out_dir`` (locked while they are written); returns their
    paths by kind."""
    with output_lock(out_dir, "camscope audit") as out:
        names = safe_names(list(run.classes))
        files: dict[str, str] = {}
        pictures: dict[str, bytes] = {}
        for name, c in run.classes.items():
            if c.mean_map is None:
                continue
            box = c.hotspot.box if c.hotspot else None
            data = encoded(mean_map_picture(c.mean_map.numpy(), box))
            file = f"mean_map_{names[name]}.png"
            write_atomic(out / file, data, durable=False)
            files[name] = file
            pictures[name] = data
        write_json(out / "audit.json", audit_json(run, settings, files))
        lines = []
        for r in run.records:
            line = {
                "id": r.id,
                "class": r.label,
                "target": r.target,
                "predicted": r.predicted,
                "probability": r.probability,
                "correct": r.correct,
                "object_energy": r.predicted_stats.object_energy,
                "object_energy_true": r.stats.object_energy,
                "mask_energy": r.mask_energy,
                "peak": list(r.stats.peak) if r.stats.peak else None,
            }
            cleaned = {**finite(line, 4), "probability": round(r.probability, 6)}  # 6 decimals
            lines.append(json.dumps(cleaned, ensure_ascii=False) + "\n")
        write_atomic(out / "images.jsonl", "".join(lines))
        write_atomic(out / "report.html", report_html(run, settings, pictures, title))
    return {"json": out / "audit.json", "html": out / "report.html", "images": out / "images.jsonl"}
