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
every picture is embedded as a base64 ``data:`` URI, so the file can be mailed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..data.inputs import safe_names
from ..viz import colorize, overlay
from .hotspot import describe_place
from .run import AuditRun, Example


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


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
    return _clean(
        {
            "classes": {name: c.to_json() for name, c in run.classes.items()},
            "flagged": run.flagged,
            "details": details,
            "settings": dict(settings),
            "layer": run.layer,
            "images": len(run.records),
            "failed": [{"id": i, "reason": r} for i, r in run.failed],
            "skipped": [{"id": i, "reason": r} for i, r in run.skipped],
        }
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
        ImageDraw.Draw(picture).rectangle(
            [x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=(0, 255, 255), width=2
        )
    return picture


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _example_row(example: Example) -> list[Image.Image]:
    base = Image.fromarray(example.image)
    pictures = []
    for heat in (example.true_map, example.predicted_map):
        pic = overlay(base, np.asarray(heat, dtype=np.float64), alpha=0.5)
        draw = ImageDraw.Draw(pic)
        for x0, y0, x1, y1 in example.boxes:
            draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=(0, 255, 0))
        pictures.append(pic)
    return [base, *pictures]


def _fmt(value: float | None, percent: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.0f}%" if percent else f"{value:.2f}"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}tr.flagged td{background:#fff4e5}.flags{color:#a33}
figure{display:inline-block;margin:6px;text-align:center;font-size:12px}
.examples td{border:none;text-align:center;font-size:12px}img.map{image-rendering:pixelated}
"""


def report_html(
    run: AuditRun, settings: Mapping[str, Any], pictures: Mapping[str, bytes], title: str
) -> str:
    """The self-contained HTML report (per-class table, mean maps, most affected images)."""
    e = html.escape
    rows = []
    for name, c in run.classes.items():
        spot = c.hotspot
        box = "[" + ", ".join(f"{v:.2f}" for v in spot.box) + "]" if spot else "–"
        place = e(describe_place(spot.box)) if spot else ""
        flags = "<br>".join(e(f) for f in c.flags)
        rows.append(
            f"<tr class='{'flagged' if c.flags else ''}'><td>{e(name)}</td><td>{c.n}</td>"
            f"<td>{_fmt(c.accuracy)}</td><td>{_fmt(c.object_energy)}</td>"
            f"<td>{place} {box}</td><td>{_fmt(spot.area if spot else None)}</td>"
            f"<td>{_fmt(c.hotspot_hits)}</td><td class='flags'>{flags}</td></tr>"
        )
    maps = "".join(
        f"<figure><img class='map' src='{_data_uri(pictures[name])}' alt='mean map of "
        f"{e(name)}'><figcaption>{e(name)}</figcaption></figure>"
        for name in run.classes
        if name in pictures
    )
    sections = []
    for name, items in run.examples.items():
        cells = []
        for ex in items:
            row = _example_row(ex)
            imgs = "".join(f"<td><img src='{_data_uri(_png(p))}' width='160'></td>" for p in row)
            caption = (
                f"{e(ex.id)}: true {e(ex.label)}, predicted {e(ex.predicted)} "
                f"(p = {ex.probability:.2f}); {e(ex.score)}"
            )
            cells.append(f"<tr>{imgs}</tr><tr><td colspan='3'>{caption}</td></tr>")
        head = "<tr><th>image</th><th>map of the true class</th><th>map of the predicted class</th></tr>"
        sections.append(f"<h3>{e(name)}</h3><table class='examples'>{head}{''.join(cells)}</table>")
    flagged = ", ".join(e(n) for n in run.flagged) or "none"
    failed = (
        "<h2>Unreadable images</h2><ul>"
        + "".join(f"<li>{e(i)}: {e(r)}</li>" for i, r in run.failed)
        + "</ul>"
        if run.failed
        else ""
    )
    thresholds = e(json.dumps(_clean(dict(settings)), ensure_ascii=False))
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{e(title)}</title><style>{_STYLE}</style></head><body>
<h1>{e(title)}</h1>
<p>{len(run.records)} images, layer <code>{e(run.layer)}</code>. Flagged classes: <b>{flagged}</b>.</p>
<p>Object energy: share of the map of the predicted class inside the object boxes. Hot spot: the
smallest box around the fewest pixels holding the set share of the class's mean map energy
(cyan box below); hits: share of the class's images whose own map peaks inside it.</p>
<table><tr><th>class</th><th>n</th><th>accuracy</th><th>object energy</th><th>hot spot</th>
<th>hot-spot area</th><th>hits</th><th>flags</th></tr>{"".join(rows)}</table>
<h2>Mean maps</h2><div>{maps}</div>
<h2>Most affected images</h2>{"".join(sections) or "<p>none</p>"}
{failed}
<h2>Settings</h2><pre>{thresholds}</pre>
</body></html>
"""


def write_audit(
    run: AuditRun, out_dir: str | Path, settings: Mapping[str, Any], title: str = "camscope audit"
) -> dict[str, Path]:
    """Write every audit file into ``out_dir``; returns their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = safe_names(list(run.classes))
    files: dict[str, str] = {}
    pictures: dict[str, bytes] = {}
    for name, c in run.classes.items():
        if c.mean_map is None:
            continue
        data = _png(mean_map_picture(c.mean_map.numpy(), c.hotspot.box if c.hotspot else None))
        file = f"mean_map_{names[name]}.png"
        (out / file).write_bytes(data)
        files[name] = file
        pictures[name] = data
    doc = audit_json(run, settings, files)
    (out / "audit.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    with (out / "images.jsonl").open("w") as fh:
        for r in run.records:
            line = {
                "id": r.id,
                "class": r.label,
                "target": r.target,
                "predicted": r.predicted,
                "probability": round(r.probability, 6),
                "correct": r.correct,
                "object_energy": r.predicted_stats.object_energy,
                "object_energy_true": r.stats.object_energy,
                "mask_energy": r.mask_energy,
                "peak": list(r.stats.peak) if r.stats.peak else None,
            }
            cleaned = {**_clean(line), "probability": line["probability"]}  # 6 decimals
            fh.write(json.dumps(cleaned, ensure_ascii=False) + "\n")
    (out / "report.html").write_text(report_html(run, settings, pictures, title), encoding="utf-8")
    return {"json": out / "audit.json", "html": out / "report.html", "images": out / "images.jsonl"}
