"""Pictures and pages of the diagnosis commands: the confusion matrix and ``report.html``.

Figures are drawn on matplotlib's Agg canvas (``matplotlib.figure.Figure``, no pyplot state).
The HTML page is self-contained (images embedded as base64) and every name in it (file names,
class names, which come from the user's folders) is escaped.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td.name{text-align:left}img{max-width:100%}
.failure{margin:1.5em 0;padding-top:.5em;border-top:1px solid #ddd}.note{color:#555;font-size:13px}
"""


def confusion_counts(classes: Sequence[str], pairs: Sequence[tuple[str, str | None]]) -> np.ndarray:
    """``(K, K + 1)`` counts: row = true data class, column = predicted data class, the last
    column for predictions outside every data class. ``pairs`` = (true, predicted or None)."""
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes) + 1), dtype=np.int64)
    for true, predicted in pairs:
        column = index[predicted] if predicted in index else len(classes)
        counts[index[true], column] += 1
    return counts


def confusion_png(classes: Sequence[str], counts: np.ndarray, title: str = "") -> bytes:
    """The confusion matrix as a PNG: rows normalised to 1 (colour), raw counts printed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(classes)
    side = max(3.5, 0.55 * (k + 1) + 2.0)
    fig = Figure(figsize=(side + 1.0, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    totals = counts.sum(1, keepdims=True)
    shares = counts / np.maximum(totals, 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(k):
        for j in range(k + 1):
            if counts[i, j]:
                colour = "white" if shares[i, j] > 0.6 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(k + 1), [*classes, "other"], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), list(classes), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the true class")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _img(path: Path, alt: str, max_width: int = 1100) -> str:
    """An ``<img>`` with the picture embedded as a JPEG (quality 88), shrunk to ``max_width``
    pixels: photographs in grids compress about 5x better than as PNG."""
    from PIL import Image

    with Image.open(path) as im:
        picture = im.convert("RGB")
    if picture.width > max_width:
        height = round(picture.height * max_width / picture.width)
        picture = picture.resize((max_width, height), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=88)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/jpeg;base64,{data}">'


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def failures_html(
    out: Path, summary: dict[str, Any], confusion: bytes | None, embed: int = 100
) -> Path:
    """Write ``report.html``: accuracy, per-class accuracy, the confusion matrix and every
    failure, most confident mistake first (the first ``embed`` with their grids)."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>camscope failures: {esc(str(summary['model']))}</title><style>{_STYLE}</style>",
        "</head><body>",
        f"<h1>Failure modes of {esc(str(summary['model']))}</h1>",
        f"<p class='note'>Data: {esc(str(summary['data']))}. Method: {esc(str(summary['method']))} at "
        f"layer {esc(str(summary['layer']))}. Overlap = IoU of the top-15% pixels of the maps for "
        "the predicted and the true class: low means the model looked elsewhere for the wrong "
        "class, high means one ambiguous object. The counterfactual map of the predicted class "
        "shows the evidence against it (regions whose removal would raise its score). See "
        "docs/diagnosis.md.</p>",
        f"<p>{summary['classified']} images classified, accuracy {_pct(summary['accuracy'])}, "
        f"{len(summary['failures'])} misclassified, {len(summary['errors'])} could not be read.</p>",
        "<h2>Per-class accuracy</h2><table><tr><th>class</th><th>images</th><th>correct</th>"
        "<th>accuracy</th></tr>",
    ]
    for name, stats in summary["per_class"].items():
        parts.append(
            f"<tr><td class='name'>{esc(name)}</td><td>{stats['images']}</td>"
            f"<td>{stats['correct']}</td><td>{_pct(stats['accuracy'])}</td></tr>"
        )
    parts.append("</table>")
    if confusion is not None:
        data = base64.b64encode(confusion).decode("ascii")
        parts.append(
            f"<h2>Confusion matrix</h2><img alt='confusion matrix' src='data:image/png;base64,{data}'>"
        )
    parts.append("<h2>Misclassified images, most confident mistake first</h2>")
    parts.append(
        "<table><tr><th>#</th><th>image</th><th>true</th><th>p(true)</th><th>rank</th>"
        "<th>predicted</th><th>p(predicted)</th><th>overlap</th></tr>"
    )
    for n, f in enumerate(summary["failures"], 1):
        parts.append(
            f"<tr><td>{n}</td><td class='name'><a href='#f{n}'>{esc(f['path'])}</a></td>"
            f"<td class='name'>{esc(f['true_label'])}</td><td>{f['true_probability']:.3f}</td>"
            f"<td>{f['true_rank']}</td><td class='name'>{esc(f['predicted_label'])}</td>"
            f"<td>{f['predicted_probability']:.3f}</td><td>{f['overlap']:.2f}</td></tr>"
        )
    parts.append("</table>")
    for n, f in enumerate(summary["failures"][:embed], 1):
        top5 = ", ".join(f"{esc(t['label'])} {t['probability']:.3f}" for t in f["top5"])
        parts.append(
            f"<div class='failure' id='f{n}'><h3>{n}. {esc(f['path'])}</h3>"
            f"<p>true {esc(f['true_label'])} (p = {f['true_probability']:.3f}, rank "
            f"{f['true_rank']}); predicted {esc(f['predicted_label'])} (p = "
            f"{f['predicted_probability']:.3f}); overlap {f['overlap']:.2f}. Top-5: {top5}</p>"
        )
        grid = out / f["grid"]
        if grid.is_file():
            parts.append(_img(grid, f"maps of {f['path']}"))
        parts.append("</div>")
    if len(summary["failures"]) > embed:
        parts.append(
            f"<p class='note'>The other {len(summary['failures']) - embed} grids are the "
            "<code>*.failure.png</code> files beside this report.</p>"
        )
    if summary["errors"]:
        parts.append("<h2>Inputs that could not be used</h2><ul>")
        parts.extend(f"<li>{esc(e['path'])}: {esc(e['error'])}</li>" for e in summary["errors"])
        parts.append("</ul>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
