"""The confusion matrix as a picture: the one plotter of ``camscope train`` and
``camscope failures``.

Rows are the true classes, columns the predicted ones (``failures`` adds an ``other`` column for
predictions outside every data class). The colour of a cell is its share of its row (the true
class), so rare and common classes read alike; the raw counts are printed in the non-empty cells
while there are at most :data:`MAX_NUMBERED` columns, and the class names label the axes while
there are at most :data:`MAX_LABELLED`. Drawn on matplotlib's Agg canvas (no pyplot state);
names are plain text (no mathtext).

Example:
    >>> png = confusion_png([[3, 1], [0, 4]], ["cat", "dog"], ["cat", "dog"], "my model")
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..outputs import encoded

#: Counts are printed in the cells up to this many columns.
MAX_NUMBERED = 20
#: Class names label the axes up to this many columns.
MAX_LABELLED = 40


def confusion_png(
    counts: Sequence[Sequence[int]] | np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    title: str = "",
) -> bytes:
    """The ``(len(rows), len(columns))`` count matrix as a PNG, each row coloured by its shares."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(counts, dtype=np.int64).reshape(len(rows), len(columns))
    shares = matrix / np.maximum(1, matrix.sum(axis=1, keepdims=True))
    side = min(12.0, max(3.5, 0.5 * len(columns) + 2.5))
    fig = Figure(figsize=(side + 1.0, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    if len(columns) <= MAX_NUMBERED:
        for i, j in zip(*np.nonzero(matrix)):
            colour = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8)
    if len(columns) <= MAX_LABELLED:
        ax.set_xticks(range(len(columns)), [str(c) for c in columns], rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        for label in (*ax.get_xticklabels(), *ax.get_yticklabels()):
            label.set(fontsize=8, parse_math=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=10, parse_math=False)
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the true class")
    return encoded(fig, "png", dpi=110, bbox_inches="tight")
