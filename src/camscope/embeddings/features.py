"""Layer embeddings: globally pooled features of chosen layers, their 2-D projection, and how well
they separate the classes.

Seed 002 (Riyaz & Morem 2024) shows layer-specific embeddings beside the maps. Here each chosen
layer's output is globally average-pooled into one vector per image (``(B, C, h, w)`` over
``h, w``; token and channels-last outputs are first laid out as ``(B, C, h, w)`` by
:func:`camscope.core.reshape.spatial_reshape`, so a ViT's class token is left out; ``(B, C)``
outputs are used as they are). ``"input"`` is the model input itself pooled the same way (the
mean colour): the baseline a layer has to beat.

Two numbers per layer say how class separation grows with depth, both on the pooled features
(not on the 2-D picture), with Euclidean distances:

* **silhouette** (Rousseeuw 1987): per image ``s = (b - a) / max(a, b)``, ``a`` the mean distance to
  the other images of its class, ``b`` the smallest mean distance to the images of another class;
  ``s = 0`` for a class of one image (scikit-learn's convention); the score is the mean ``s``, in
  ``[-1, 1]``;
* **k-NN accuracy**: leave-one-out, each image takes the majority class of its ``k`` nearest other
  images (ties to the class listed first).

Both come from scikit-learn (``silhouette_score``; ``NearestNeighbors`` for the neighbours, the
vote counted here), on the CPU where the pooled features already are.

Projection to 2-D: PCA by default (scikit-learn's, exact SVD of the centred features, each
component's sign fixed so that its largest loading is positive), or UMAP
(McInnes et al. 2018) through ``umap-learn`` (``pip install camscope[umap]``).

The forward passes run under ``torch.no_grad()`` in eval mode with hooks on the chosen layers
only; hooks are removed and every module's mode is restored afterwards, also on error.

Example:
    >>> layers = resolve_embedding_layers(model, ["input", "first", "last"], x)  # doctest: +SKIP
    >>> features, prediction = pooled_features(model, x, layers)  # doctest: +SKIP
    >>> silhouette(features["layer4"], labels), knn_accuracy(features["layer4"], labels)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.concurrency import PassScope
from ..core.layers import no_grad_forward, resolve_layers
from ..core.prediction import Prediction, predict
from ..core.reshape import spatial_reshape
from ..errors import LayerError, UsageError

INPUT = "input"
Layers = list[tuple[str, nn.Module | None]]


def resolve_embedding_layers(model: nn.Module, names: Sequence[str], x: Tensor) -> Layers:
    """``["input", "first", "layer3.1", ...]`` -> ``[(name, module or None for the input)]``
    without duplicates, through :func:`camscope.core.layers.resolve_layers`."""
    if not names:
        raise LayerError("no layer given; pass e.g. --layers first,middle,last")
    out: Layers = []
    if any(n.strip().lower() == INPUT for n in names):
        out.append((INPUT, None))
    rest = [n for n in names if n.strip().lower() != INPUT]
    if rest:
        out.extend(resolve_layers(model, rest, x))
    return out


def _pool(output: Any, name: str, model: nn.Module, size: tuple[int, int]) -> Tensor:
    if isinstance(output, (tuple, list)):
        output = next((o for o in output if isinstance(o, Tensor)), None)
    if not isinstance(output, Tensor) or not output.is_floating_point():
        raise LayerError(f"layer {name!r} does not output a float tensor; pick another layer")
    if output.ndim == 2:
        return output.float()
    if output.ndim not in (3, 4):
        raise LayerError(f"layer {name!r} outputs shape {tuple(output.shape)}; cannot pool it")
    return spatial_reshape(model, name, size)(output).float().mean(dim=(2, 3))


@torch.no_grad()
def pooled_features(
    model: nn.Module,
    x: Tensor,
    layers: Layers,
    *,
    multilabel: bool = False,
) -> tuple[dict[str, Tensor], Prediction]:
    """Pooled ``(B, C)`` features of ``layers`` for the batch ``x`` (in depth order: the order
    the layers ran) and the model's :class:`~camscope.core.prediction.Prediction`, from one
    forward pass.

    The model runs in eval mode; modes and hooks are as before afterwards, also on error.
    """
    size = (int(x.shape[-2]), int(x.shape[-1]))
    found: dict[str, Tensor] = {}
    if any(module is None for _, module in layers):
        found[INPUT] = x.float().mean(dim=(2, 3))
    handles = []
    scope = PassScope()  # another thread's forward of the model is not recorded

    def hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if name not in found:  # a module called twice: its first call, like the dry forward
                found[name] = _pool(output, name, model, size)

        return record

    try:
        for name, module in layers:
            if module is not None:
                handles.append(module.register_forward_hook(scope.hook(hook(name))))
        with scope.active():
            output = no_grad_forward(model, x)  # eval mode, modes restored, the model's lock held
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name, _ in layers if name not in found]
    if missing:
        raise LayerError(f"layer(s) {missing} did not run in the forward pass; pick others")
    prediction = predict(output, multilabel=multilabel)
    return {name: found[name].cpu() for name in found}, prediction


def _check(features: Tensor, labels: Tensor) -> tuple[np.ndarray, np.ndarray]:
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        raise UsageError(
            f"features {tuple(features.shape)} and labels {tuple(labels.shape)} do not match"
        )
    return features.double().cpu().numpy(), labels.long().cpu().numpy()


def silhouette(features: Tensor, labels: Tensor) -> float | None:
    """Mean silhouette of ``(N, D)`` features grouped by ``(N,)`` integer labels (see the module
    docstring; :func:`sklearn.metrics.silhouette_score`, Euclidean); None unless there are at
    least 2 classes and fewer classes than images."""
    from sklearn.metrics import silhouette_score

    x, y = _check(features, labels)
    classes = len(np.unique(y))
    if classes < 2 or classes >= len(y):
        return None
    return float(silhouette_score(x, y, metric="euclidean"))


def knn_accuracy(features: Tensor, labels: Tensor, k: int = 5) -> float | None:
    """Leave-one-out ``k``-NN accuracy (majority vote, ties to the lowest label); None for fewer
    than two images. The neighbours come from :class:`sklearn.neighbors.NearestNeighbors`
    (each image's own point left out)."""
    from sklearn.neighbors import NearestNeighbors

    x, y = _check(features, labels)
    n = len(y)
    if n < 2:
        return None
    if k < 1:
        raise UsageError(f"k must be at least 1; got {k}")
    k = min(k, n - 1)
    nearest = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)
    _, index = np.unique(y, return_inverse=True)
    votes = np.zeros((n, index.max() + 1), dtype=np.int64)
    np.add.at(votes, (np.arange(n)[:, None], index[nearest]), 1)
    return float((votes.argmax(1) == index).mean())


def pca_2d(features: Tensor) -> tuple[Tensor, list[float]]:
    """``(N, 2)`` PCA coordinates and the two components' explained-variance ratios
    (:class:`sklearn.decomposition.PCA`, exact SVD; each component's sign set so that its
    largest loading is positive, whatever scikit-learn's version does)."""
    from sklearn.decomposition import PCA

    x = features.double().cpu().numpy()
    n = x.shape[0]
    if n < 2 or not np.any(x != x.mean(0)):
        return torch.zeros(n, 2), [0.0, 0.0]
    k = min(2, *x.shape)
    pca = PCA(n_components=k, svd_solver="full").fit(x)
    signs = np.sign(pca.components_[np.arange(k), np.abs(pca.components_).argmax(1)])
    coords = np.zeros((n, 2))
    coords[:, :k] = pca.transform(x) * np.where(signs == 0, 1.0, signs)
    ratios = [float(v) for v in pca.explained_variance_ratio_] + [0.0] * (2 - k)
    return torch.from_numpy(coords).float(), ratios


def umap_2d(features: Tensor, seed: int = 0, neighbours: int = 15) -> Tensor:
    """``(N, 2)`` UMAP coordinates (``umap-learn``; ``pip install camscope[umap]``)."""
    n = features.shape[0]
    if n < 4:
        raise UsageError(f"UMAP needs at least 4 images; got {n} (use --projection pca)")
    try:
        import umap
    except ImportError:
        raise UsageError(
            "--projection umap needs umap-learn: pip install 'camscope[umap]'"
        ) from None
    reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(neighbours, n - 1))
    with warnings.catch_warnings():  # a fixed seed makes umap-learn single-threaded, and say so
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        coords = reducer.fit_transform(features.double().numpy())
    return torch.as_tensor(coords, dtype=torch.float32)
