"""Pooled layer features by hand, separation scores against their definitions written out, PCA
against scikit-learn, no side effects."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from nets import A0, A1, GapNet, SmallNet, hook_counts, ramp
from PIL import Image
from torch import nn

from camscope.data.dataset import LabelledData, Sample
from camscope.embeddings.features import (
    INPUT,
    knn_accuracy,
    pca_2d,
    pooled_features,
    resolve_embedding_layers,
    silhouette,
)
from camscope.embeddings.run import embed_dataset
from camscope.errors import LayerError, UsageError
from camscope.models import ModelSpec


def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (3, 6))
    labels = np.repeat([0, 1, 2], [14, 11, 9])
    return centres[labels] + rng.normal(0, 1.5, (len(labels), 6)), labels


def _silhouette_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    """Rousseeuw (1987) written out with loops; a class of one image scores 0."""
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    scores = []
    for i in range(len(y)):
        own = [j for j in range(len(y)) if y[j] == y[i] and j != i]
        if not own:
            scores.append(0.0)
            continue
        a = dist[i, own].mean()
        b = min(dist[i, y == c].mean() for c in set(y.tolist()) if c != y[i])
        scores.append((b - a) / max(a, b))
    return float(np.mean(scores))


def _knn_by_definition(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Leave-one-out: the k nearest other images vote, ties to the lowest label."""
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    hits = 0
    for i in range(len(y)):
        order = [j for j in np.argsort(dist[i], kind="stable") if j != i][:k]
        votes = np.bincount(y[order], minlength=y.max() + 1)
        hits += int(votes.argmax() == y[i])
    return hits / len(y)


def test_silhouette_agrees_with_the_definition() -> None:
    x, y = _clusters()
    got = silhouette(torch.from_numpy(x), torch.from_numpy(y))
    assert got == pytest.approx(_silhouette_by_definition(x, y), abs=1e-8)
    # a class of one image contributes 0; labels need not be 0..K-1
    y2 = y.copy()
    y2[0] = 7
    got = silhouette(torch.from_numpy(x), torch.from_numpy(y2))
    assert got == pytest.approx(_silhouette_by_definition(x, y2), abs=1e-8)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_accuracy_agrees_with_the_definition_leave_one_out(k) -> None:
    x, y = _clusters(1)
    got = knn_accuracy(torch.from_numpy(x), torch.from_numpy(y), k=k)
    assert got == pytest.approx(_knn_by_definition(x, y, k))
    assert 0.5 < got < 1.0  # overlapping clusters: neither chance nor perfect


def test_scores_by_hand() -> None:
    # two pairs: a = 1 everywhere; b = (10 + 11) / 2 for the outer points 0 and 11, (9 + 10) / 2
    # for the inner ones -> s = 9.5 / 10.5 and 8.5 / 9.5, twice each
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert silhouette(x, y) == pytest.approx((9.5 / 10.5 + 8.5 / 9.5) / 2)
    assert knn_accuracy(x, y, k=1) == 1.0
    assert silhouette(x, torch.zeros(4, dtype=torch.long)) is None  # one class: undefined
    assert knn_accuracy(x[:1], y[:1]) is None
    with pytest.raises(UsageError):
        silhouette(x, y[:3])


def test_pca_agrees_with_the_svd_including_the_sign() -> None:
    x, _ = _clusters(2)
    coords, ratios = pca_2d(torch.from_numpy(x))
    centred = x - x.mean(0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    for j in range(2):  # the sign: the component's largest loading is positive
        sign = np.sign(vt[j, np.abs(vt[j]).argmax()])
        np.testing.assert_allclose(coords[:, j].numpy(), u[:, j] * s[j] * sign, atol=1e-4)
    np.testing.assert_allclose(ratios, (s**2 / (s**2).sum())[:2], atol=1e-6)
    # one feature: the second coordinate is 0
    line, ratios = pca_2d(torch.tensor([[0.0], [1.0], [3.0]]))
    assert line[:, 0].tolist() == pytest.approx([-4 / 3, -1 / 3, 5 / 3]) and ratios == [1.0, 0.0]
    # degenerate: one image, or identical images
    assert pca_2d(torch.ones(1, 3))[0].shape == (1, 2)
    assert pca_2d(torch.ones(5, 3))[0].abs().sum() == 0


def test_pooled_features_by_hand_in_depth_order_without_side_effects() -> None:
    net = GapNet().train()  # a train-mode model stays in train mode
    x = ramp(2)
    layers = resolve_embedding_layers(net, ["relu", INPUT, "conv"], x)
    assert [name for name, _ in layers] == [INPUT, "relu", "conv"]
    features, prediction = pooled_features(net, x, list(reversed(layers)))
    assert list(features) == [INPUT, "conv", "relu"]  # the order the layers ran
    expected_relu = torch.tensor([np.mean(A0), np.mean(A1)], dtype=torch.float32)
    torch.testing.assert_close(features["relu"], expected_relu.repeat(2, 1))
    torch.testing.assert_close(features[INPUT], torch.full((2, 1), 7.5))
    torch.testing.assert_close(prediction.logits[0], torch.tensor([23 / 9, 25 / 18, 67 / 18]))
    assert prediction.classes.tolist() == [2, 2] and prediction.probability_kind == "softmax"
    assert net.training and all(m.training for m in net.modules())
    assert hook_counts(net) == {}
    assert all(p.grad is None for p in net.parameters())


def test_hooks_and_modes_are_restored_when_the_forward_fails() -> None:
    class Broken(SmallNet):
        def forward(self, x):
            self.features(self.stem(x))
            raise RuntimeError("boom")

    net = Broken().train()
    layers = resolve_embedding_layers(net, ["features"], torch.zeros(1, 3, 8, 8))
    with pytest.raises(RuntimeError, match="boom"):
        pooled_features(net, torch.zeros(2, 3, 8, 8), layers)
    assert hook_counts(net) == {} and all(m.training for m in net.modules())


def test_another_threads_forward_during_ours_is_not_recorded() -> None:
    """A user's plain ``model(x)`` in another thread runs while the hooks are on the model: its
    features must not stand in for ours (the hooks keep a layer's first call)."""
    import threading

    class Gate(nn.Module):
        """Runs another thread's whole forward of the model in the middle of the first one."""

        def __init__(self) -> None:
            super().__init__()
            self.opened = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.opened:
                self.opened = True
                other = threading.Thread(target=net, args=(torch.full((1, 3, 4, 4), -5.0),))
                other.start()
                other.join()
            return x

    net = nn.Sequential(Gate(), nn.Conv2d(3, 2, 1), nn.Flatten(), nn.LazyLinear(2))
    x = torch.ones(1, 3, 4, 4)
    layers = resolve_embedding_layers(net, ["1"], x)  # also materialises the lazy layer
    net[0].opened = False  # the gate opens in the next forward: pooled_features'
    with torch.no_grad():
        expected = net[1](x).mean(dim=(2, 3))
    features, _ = pooled_features(net, x, layers)
    torch.testing.assert_close(features["1"], expected)


def test_unknown_and_unpoolable_layers_are_layer_errors() -> None:
    net = SmallNet().eval()
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(LayerError, match="no layer named"):
        resolve_embedding_layers(net, ["nope"], x)
    with pytest.raises(LayerError):
        resolve_embedding_layers(net, [], x)

    class Ints(nn.Module):
        def forward(self, x):
            return x.long()

    wrapped = nn.Sequential(Ints(), nn.Flatten())
    layers = resolve_embedding_layers(wrapped, ["0"], x)
    with pytest.raises(LayerError, match="float tensor"):
        pooled_features(wrapped, x, layers)
    assert hook_counts(wrapped) == {}


def test_the_run_keeps_no_decoded_image_of_a_batch_it_is_done_with() -> None:
    # a generated data set (builtin:N) makes each image as it is read: a run must not hold every
    # image until its end, only the batch at hand
    made: list[weakref.ref[Image.Image]] = []
    alive_at_the_end: list[int] = []

    class Generated(Sequence[Sample]):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, i):  # type: ignore[override]
            if i == 5:  # the third batch: the first one is long done
                gc.collect()
                alive_at_the_end.extend(k for k, ref in enumerate(made) if ref() is not None)
            picture = Image.new("RGB", (8, 8), (40 * i, 0, 0))
            made.append(weakref.ref(picture))
            return Sample(f"g{i}", f"g{i}", "a" if i % 2 else "b", (i % 2,), image=picture)

    spec = ModelSpec("net", input_size=(8, 8), class_names=["a", "b", "c", "d", "e"])
    data = LabelledData(Generated())
    run = embed_dataset(SmallNet().eval(), spec, data, ["features"], k=1, batch_size=2)
    assert run.ids == [f"g{i}" for i in range(6)] and len(made) == 6
    assert 0 not in alive_at_the_end and 1 not in alive_at_the_end
