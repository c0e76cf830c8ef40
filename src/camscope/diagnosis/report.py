"""Pictures and pages of the diagnosis commands: the confusion matrix and ``report.html``.

The confusion matrix is counted by scikit-learn (:func:`sklearn.metrics.confusion_matrix`) and
drawn by :func:`camscope.viz.confusion_png`, the plotter ``camscope train`` uses too. The page
is the ``failures.html`` template (:func:`camscope.outputs.render_page`): self-contained (the
grids embedded as JPEG), every name in it (file names, class names, which come from the user's
folders) escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..outputs import encoded, render_page, write_atomic

OTHER = "other"  # the column of predictions outside every data class


def confusion_counts(classes: Sequence[str], pairs: Sequence[tuple[str, str | None]]) -> np.ndarray:
    """``(K, K + 1)`` counts: row = true data class, column = predicted data class, the last
    column for predictions outside every data class. ``pairs`` = (true, predicted or None)."""
    from sklearn.metrics import confusion_matrix

    other = len(classes)
    if not pairs:
        return np.zeros((other, other + 1), dtype=np.int64)
    index = {c: i for i, c in enumerate(classes)}
    true = [index[t] for t, _ in pairs]
    predicted = [index.get(p, other) for _, p in pairs]  # type: ignore[arg-type]
    counts = confusion_matrix(true, predicted, labels=list(range(other + 1)))
    return counts[:other].astype(np.int64)


def _jpeg(path: Path, max_width: int = 1100) -> bytes:
    """The picture as a JPEG (quality 88), shrunk to ``max_width`` pixels: photographs in grids
    compress about 5x better than as PNG."""
    from PIL import Image

    with Image.open(path) as im:
        picture = im.convert("RGB")
    if picture.width > max_width:
        height = round(picture.height * max_width / picture.width)
        picture = picture.resize((max_width, height), Image.Resampling.LANCZOS)
    return encoded(picture, "JPEG", quality=88)


def failures_html(
    out: Path, summary: dict[str, Any], confusion: bytes | None, embed: int = 100
) -> Path:
    """Write ``report.html``: accuracy, per-class accuracy, the confusion matrix and every
    failure, most confident mistake first (the first ``embed`` with their grids)."""
    shown = []
    for f in summary["failures"][:embed]:
        grid = out / f["grid"]
        shown.append((f, _jpeg(grid) if grid.is_file() else None))
    page = render_page(
        "failures.html",
        title=f"camscope failures: {summary['model']}",
        summary=summary,
        confusion=confusion,
        shown=shown,
    )
    return write_atomic(out / "report.html", page)
