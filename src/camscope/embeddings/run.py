"""``camscope embed`` over a data set: batched forward passes, pooled features, one projection and
two separation scores per layer (:mod:`camscope.embeddings.features`).

Images are walked in batches by :class:`camscope.data.walk.Walk`; one that cannot be read is
reported (``on_skip``, default a logged warning), listed in :attr:`EmbeddingRun.failed` and left
out. The model's own prediction comes from the same forward pass
(:func:`camscope.core.prediction.predict`: a single-logit model has the classes 0 and 1); an
image is misclassified when its top-1 class is none of its label's accepted classes (labels that
map to no model class are not judged).

Example:
    >>> data = read_data("pets", spec.class_names, DataOptions(unmapped="keep"))  # doctest: +SKIP
    >>> run = embed_dataset(model, spec, data, ["input", "first", "middle", "last"])  # doctest: +SKIP
    >>> {name: layer.silhouette for name, layer in run.layers.items()}  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..data.dataset import LabelledData, LoadOptions, Prepared
from ..data.progress import Progress
from ..data.walk import SkipFn, Walk
from ..errors import UsageError
from ..models.spec import model_device
from ..outputs import data_uri, encoded
from .features import (
    knn_accuracy,
    pca_2d,
    pooled_features,
    resolve_embedding_layers,
    silhouette,
    umap_2d,
)

PROJECTIONS = ("pca", "umap")


@dataclass
class LayerEmbedding:
    """One layer: pooled features, 2-D points and the separation scores."""

    name: str
    features: Tensor
    points: Tensor
    silhouette: float | None
    knn_accuracy: float | None
    explained_variance: list[float] | None = None


@dataclass
class EmbeddingRun:
    """What :func:`embed_dataset` produced. ``images`` are the entries of ``embeddings.json``'s
    ``"images"`` (id, class, predicted, predicted_class, probability, correct), in the order of
    every layer's points and of ``thumbnails``."""

    layers: dict[str, LayerEmbedding]
    images: list[dict[str, Any]]
    classes: list[str]
    thumbnails: list[str]
    projection: str
    k: int
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [image["id"] for image in self.images]


def _thumbnail(item: Prepared, side: int = 64) -> str:
    picture = item.image.convert("RGB")
    picture.thumbnail((side, side))
    return data_uri(encoded(picture, "JPEG", quality=80), "image/jpeg")


def embed_dataset(
    model: nn.Module,
    spec: Any,
    data: LabelledData,
    layer_names: Sequence[str],
    *,
    projection: str = "pca",
    k: int = 5,
    batch_size: int = 32,
    seed: int = 0,
    thumbnails: int = 2000,
    progress: bool | Progress = False,
    on_skip: SkipFn | None = None,
    max_pixels: int | None = None,
    multilabel: bool = False,
) -> EmbeddingRun:
    """Pooled features of ``layer_names`` for every image of ``data``, projected to 2-D.

    Args:
        layer_names: ``input``, ``first``/``middle``/``last``, ``auto``, ``conv:N`` or names.
        projection: ``"pca"`` or ``"umap"``.
        k: neighbours of the k-NN accuracy.
        thumbnails: images that get a hover thumbnail in the HTML (the first ones).
        progress: a progress bar on stderr (True, or a :class:`Progress`).
        on_skip: told ``(source, reason)`` of every image that cannot be read.
        max_pixels: refuse larger images (default: the library's limit).
        multilabel: the classes are independent sigmoids (a multi-label head), not a softmax.
    """
    if projection not in PROJECTIONS:
        raise UsageError(f"projection must be one of {', '.join(PROJECTIONS)}; got {projection!r}")
    if batch_size < 1 or k < 1:
        raise UsageError(f"batch_size and k must be at least 1; got {batch_size} and {k}")
    device = model_device(model)
    chunks: dict[str, list[Tensor]] = {}  # in depth order: the order the hooks fired in
    seen: list[tuple[str, str, tuple[int, ...]]] = []  # id, label, class_ids: not the images
    predicted: list[int] = []
    probabilities: list[float] = []
    thumbs: list[str] = []
    layers = None
    walk: Walk[Prepared] = Walk(
        data.items, spec=spec, options=LoadOptions(max_pixels), batch_size=batch_size,
        progress=progress, label="embed", on_skip=on_skip,
    )  # fmt: skip
    for batch in walk:
        if not batch.ok:
            continue
        x = torch.cat([p.x for _, p in batch.ok]).to(device)
        if layers is None:
            layers = resolve_embedding_layers(model, list(layer_names), x)
        features, prediction = pooled_features(model, x, layers, multilabel=multilabel)
        for name, part in features.items():
            chunks.setdefault(name, []).append(part)
        top = [int(c) for c in prediction.classes.cpu()]
        predicted.extend(top)
        probabilities.extend(prediction.probability(i, c) for i, c in enumerate(top))
        seen.extend((s.id, str(s.label or ""), s.class_ids) for s, _ in batch.ok)
        thumbs.extend(_thumbnail(p) for _, p in batch.ok[: max(thumbnails - len(thumbs), 0)])
    if not seen:
        raise UsageError("no image could be read, so there is nothing to embed")
    labels = [label for _, label, _ in seen]
    classes = list(data.classes) + sorted(set(labels) - set(data.classes))
    label_index = torch.tensor([classes.index(label) for label in labels])
    result: dict[str, LayerEmbedding] = {}
    for name, parts in chunks.items():
        feats = torch.cat(parts)
        points, ratios = pca_2d(feats) if projection == "pca" else (umap_2d(feats, seed=seed), None)
        score = silhouette(feats, label_index)
        accuracy = knn_accuracy(feats, label_index, k)
        result[name] = LayerEmbedding(name, feats, points, score, accuracy, ratios)
    images = [
        {
            "id": image_id,
            "class": label,
            "predicted": spec.label(c),
            "predicted_class": c,
            "probability": round(probability, 6),
            "correct": c in class_ids if class_ids else None,
        }
        for (image_id, label, class_ids), c, probability in zip(seen, predicted, probabilities)
    ]
    failed = [(s.id, s.reason) for s in walk.skipped]
    return EmbeddingRun(result, images, classes, thumbs, projection, k, failed)
