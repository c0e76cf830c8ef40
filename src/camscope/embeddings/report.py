"""Files of ``camscope embed``: ``embeddings.json``, ``embed_<layer>.png`` and ``embeddings.html``.

``embeddings.json``::

    {"layers": {NAME: {"silhouette", "knn_accuracy", "k", "dims", "explained_variance",
                       "figure", "points"}},          # layers in depth order
     "images": [{"id", "class", "predicted", "predicted_class", "probability", "correct"}],
                                                       # the order of "points"
     "classes": [...], "projection": "pca" | "umap", "failed": [{"id", "reason"}], ...}

``silhouette`` and ``knn_accuracy`` are measured on the pooled features (``dims`` wide), not on the
2-D points; ``explained_variance`` is the share of variance of the two PCA components (``null`` for
UMAP); ``predicted`` is the predicted class's name, ``predicted_class`` its index and
``probability`` its probability (softmax, or sigmoid for single-logit and ``--multilabel`` models);
``correct`` is ``null`` for images whose label is no model class.

The PNG scatter of each layer colours the images by class and marks misclassified ones with a
black-edged cross. The HTML (the ``embeddings.html`` template) draws the same scatters as inline
SVG, with each image's thumbnail (embedded as base64 JPEG) shown on hover; every name is
escaped, nothing is loaded from outside.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.inputs import safe_names
from ..outputs import encoded, finite, output_lock, render_page, write_atomic, write_json
from ..viz import chart_colour
from .run import EmbeddingRun, LayerEmbedding


def _title(layer: LayerEmbedding, k: int) -> str:
    sil = "–" if layer.silhouette is None else f"{layer.silhouette:.2f}"
    knn = "–" if layer.knn_accuracy is None else f"{100 * layer.knn_accuracy:.0f}%"
    return f"{layer.name}: silhouette {sil}, {k}-NN accuracy {knn}"


def _axis_names(run: EmbeddingRun, layer: LayerEmbedding) -> tuple[str, str]:
    if run.projection == "pca" and layer.explained_variance:
        a, b = layer.explained_variance
        return f"PC 1 ({100 * a:.0f}% of the variance)", f"PC 2 ({100 * b:.0f}%)"
    return "UMAP 1", "UMAP 2"


def scatter_png(run: EmbeddingRun, layer: LayerEmbedding) -> bytes:
    """One layer's scatter: colour = class, black-edged cross = misclassified."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.6))  # savefig draws it on an Agg canvas
    ax = fig.add_subplot(1, 1, 1)
    points = layer.points.numpy()
    for ci, name in enumerate(run.classes):
        named = False  # one legend entry per class, on its first series
        for wrong in (False, True):
            idx = [
                i
                for i, image in enumerate(run.images)
                if image["class"] == name and (image["correct"] is False) == wrong
            ]
            if not idx:
                continue
            ax.scatter(
                points[idx, 0],
                points[idx, 1],
                s=46 if wrong else 18,
                c=chart_colour(ci),
                marker="X" if wrong else "o",
                edgecolors="black" if wrong else "none",
                linewidths=0.8,
                alpha=0.85,
                label=None if named else name,
            )
            named = True
    if any(image["correct"] is False for image in run.images):
        ax.scatter([], [], s=46, c="white", marker="X", edgecolors="black", label="misclassified")
    xlabel, ylabel = _axis_names(run, layer)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(_title(layer, run.k), fontsize=9)
    ax.legend(fontsize=7, loc="best", markerscale=0.9)
    ax.grid(alpha=0.25)
    return encoded(fig, "png", dpi=110, bbox_inches="tight")


def _marks(
    run: EmbeddingRun, layer: LayerEmbedding, side: int, pad: int = 16
) -> list[tuple[float, float, str, bool, str]]:
    """Each image's point on the SVG scatter: ``(x, y, colour, misclassified, tooltip)``."""
    points = layer.points.tolist()
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (side - 2 * pad) / (x1 - x0) if x1 > x0 else 0.0
    sy = (side - 2 * pad) / (y1 - y0) if y1 > y0 else 0.0
    marks = []
    for (x, y), image in zip(points, run.images):
        wrong = image["correct"] is False
        marks.append(
            (
                pad + (x - x0) * sx if sx else side / 2,
                side - pad - (y - y0) * sy if sy else side / 2,
                chart_colour(run.classes.index(image["class"])),
                wrong,
                f"{image['id']} · {image['class']}" + (" · misclassified" if wrong else ""),
            )
        )
    return marks


def embeddings_html(run: EmbeddingRun, title: str) -> str:
    """The self-contained HTML page with one hoverable scatter per layer."""
    side = 420
    plots = [(_title(layer, run.k), _marks(run, layer, side)) for layer in run.layers.values()]
    colours = [chart_colour(i) for i in range(len(run.classes))]
    return render_page(
        "embeddings.html",
        title=title,
        run=run,
        images=run.images,
        plots=plots,
        side=side,
        colours=colours,
    )


def write_embeddings(
    run: EmbeddingRun, out_dir: str | Path, settings: Mapping[str, Any], title: str
) -> dict[str, Path]:
    """Write ``embeddings.json``, one ``embed_<layer>.png`` per layer and ``embeddings.html``
    (the folder locked while they are written)."""
    with output_lock(out_dir, "camscope embed") as out:
        names = safe_names(list(run.layers))
        layers: dict[str, Any] = {}
        for name, layer in run.layers.items():
            figure = f"embed_{names[name]}.png"
            write_atomic(out / figure, scatter_png(run, layer), durable=False)
            layers[name] = {
                "silhouette": finite(layer.silhouette, 4),
                "knn_accuracy": finite(layer.knn_accuracy, 4),
                "k": run.k,
                "dims": int(layer.features.shape[1]),
                "explained_variance": finite(layer.explained_variance, 4),  # None stays None
                "figure": figure,
                "points": [[round(float(v), 5) for v in p] for p in layer.points.tolist()],
            }
        doc = {
            "layers": layers,
            "images": run.images,
            "classes": run.classes,
            "projection": run.projection,
            "settings": dict(settings),
            "failed": [{"id": i, "reason": r} for i, r in run.failed],
        }
        write_json(out / "embeddings.json", doc, indent=1)
        write_atomic(out / "embeddings.html", embeddings_html(run, title))
    return {"json": out / "embeddings.json", "html": out / "embeddings.html"}
