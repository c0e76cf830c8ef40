"""Deep Feature Factorization (DFF).

Collins, Achanta & Süsstrunk, "Deep Feature Factorization for Concept Discovery", ECCV 2018
(arXiv:1806.10206). The layer's activations of one image, a ``C x hw`` matrix ``A`` (channels by
positions), are factorized by non-negative matrix factorization into ``K`` concepts:

.. math::
    A - o \\mathbf{1}^\\top \\approx W H,\\qquad W \\in \\mathbb{R}_{\\ge 0}^{C \\times K},\\;
    H \\in \\mathbb{R}_{\\ge 0}^{K \\times hw}

with ``o`` the per-channel minimum over positions (it makes the matrix non-negative; zero after a
ReLU), minimising ``\\lVert A - o\\mathbf{1}^\\top - WH \\rVert_F`` by Lee & Seung's multiplicative
updates. Row ``k`` of ``H`` is concept ``k``'s map; column ``k`` of ``W`` plus ``o`` is its
embedding ``e_k`` in the layer's channel space. Each concept is named by the classes its
embedding scores highest: the network after the layer runs on the layer output with every
position (and token) set to ``e_k`` (:class:`camscope.perturbation.ablation.Tail`); for a layer
followed by global pooling and a linear classifier that is the classifier applied to ``e_k``, as
pytorch-grad-cam's DFF does with the classifier weights.

The registered method ``dff`` returns, for each target class, the map of the concept whose
embedding gives that class the highest probability: the concepts do not depend on the class, the
choice among them does. :func:`concepts` returns every concept (maps, embeddings, top classes and
their probabilities) for the concept view.

Options: ``num_concepts`` (``K``, default 5), ``batch_size``. Example:

    >>> explain(model, x, "dff", method_options={"num_concepts": 4})  # doctest: +SKIP
    >>> [c.top_classes for c in concepts(model, x, num_concepts=4)]  # doctest: +SKIP

Deviations: each image is factorized on its own (the paper factorizes a set of images jointly,
to find concepts they share; pytorch-grad-cam factorizes the whole batch); the factorization
starts from the deterministic NNDSVDa initialisation (Boutsidis & Gallopoulos 2008), so no seed
is needed and the result does not change between runs, and stops after 500 updates or when the
relative error changes by less than 1e-6 (scikit-learn's solver, which pytorch-grad-cam uses,
gives the same concepts up to their order: ``tests/methods/test_dff.py``). The concept scores
run in eval mode. Callable targets are not supported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core.concurrency import model_lock
from ..core.context import LayerContext
from ..core.layers import LayerSpec, ReshapeFn, resolve_layers, to_spatial
from ..core.prediction import ClassHead, OutputAdapter, Prediction, class_head
from ..core.registry import register_method
from ..core.reshape import spatial_reshape
from ..errors import UsageError
from ..perturbation.ablation import Tail, tails
from ..perturbation.options import Settings, class_targets, positive_int

MAX_UPDATES = 500
TOLERANCE = 1e-6
_EPS = 1e-12


def nndsvda(v: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """NNDSVDa start ``(W, H)`` for the factorization of the non-negative ``v`` (``n x m``): the
    non-negative parts of the leading singular pairs, zeros replaced by the mean of ``v``."""
    u, s, vt = torch.linalg.svd(v, full_matrices=False)
    n, m = v.shape
    w = torch.zeros(n, k, dtype=v.dtype, device=v.device)
    h = torch.zeros(k, m, dtype=v.dtype, device=v.device)
    for j in range(min(k, s.numel())):
        x, y = u[:, j], vt[j]
        if j == 0:  # the leading pair of a non-negative matrix has one sign (Perron-Frobenius)
            uu, vv, sigma = x.abs(), y.abs(), s[0]
        else:
            xp, xn, yp, yn = x.clamp(min=0), (-x).clamp(min=0), y.clamp(min=0), (-y).clamp(min=0)
            pos, neg = xp.norm() * yp.norm(), xn.norm() * yn.norm()
            if pos >= neg:
                uu, vv, sigma = xp / xp.norm().clamp(min=_EPS), yp / yp.norm().clamp(min=_EPS), pos
            else:
                uu, vv, sigma = xn / xn.norm().clamp(min=_EPS), yn / yn.norm().clamp(min=_EPS), neg
            sigma = s[j] * sigma
        w[:, j] = sigma.sqrt() * uu
        h[j] = sigma.sqrt() * vv
    fill = v.mean()
    return torch.where(w == 0, fill, w), torch.where(h == 0, fill, h)


def nmf(v: Tensor, k: int, updates: int = MAX_UPDATES) -> tuple[Tensor, Tensor]:
    """Non-negative ``W (n x k)``, ``H (k x m)`` with ``W H ~ v`` (Frobenius norm), by
    multiplicative updates from :func:`nndsvda`; stops early when the relative error changes by
    less than :data:`TOLERANCE` over ten updates."""
    w, h = nndsvda(v, k)
    scale = v.norm().clamp(min=_EPS)
    previous = float("inf")
    for step in range(updates):
        h = h * (w.T @ v) / (w.T @ w @ h + _EPS)
        w = w * (v @ h.T) / (w @ (h @ h.T) + _EPS)
        if step % 10 == 9:
            error = float((v - w @ h).norm() / scale)
            if abs(previous - error) < TOLERANCE:
                break
            previous = error
    return w, h


@dataclass
class Concepts:
    """The concepts of one image's layer activations.

    Attributes:
        layer: the layer's dotted name.
        maps: ``(K, h, w)`` concept maps at layer resolution (rows of ``H``, non-negative,
            unnormalised; resize and normalise them for display).
        embeddings: ``(K, C)`` concept embeddings in the layer's channel space.
        logits: ``(K, classes)`` model output with the layer set to each embedding.
        probabilities: ``(K, classes)`` the same as probabilities (softmax, or sigmoid for
            single-logit and multi-label heads).
        top_classes: ``(K, top)`` class ids each concept scores highest, best first.
        top_probabilities: ``(K, top)`` their probabilities.
        error: relative reconstruction error ``|A - o - WH| / |A - o|`` of the factorization.
    """

    layer: str
    maps: Tensor
    embeddings: Tensor
    logits: Tensor
    probabilities: Tensor
    top_classes: Tensor
    top_probabilities: Tensor
    error: float

    def tops(self, label: Callable[[int], str]) -> list[list[dict[str, Any]]]:
        """Per concept, its top classes as ``{"class", "label", "probability"}`` (JSON-ready)."""

        def entry(c: int, p: float) -> dict[str, Any]:
            return {"class": int(c), "label": label(int(c)), "probability": round(float(p), 6)}

        pairs = zip(self.top_classes.tolist(), self.top_probabilities.tolist())
        return [[entry(c, p) for c, p in zip(classes, probs)] for classes, probs in pairs]


def _factorize(acts: Tensor, k: int) -> tuple[Tensor, Tensor, float]:
    """``(C, h, w)`` activations -> ``(K, h, w)`` maps, ``(K, C)`` embeddings, relative error."""
    c, h, w = acts.shape
    if k > min(c, h * w):
        raise UsageError(
            f"dff: num_concepts={k} is more than the layer allows (min of {c} channels and "
            f"{h * w} positions); pick fewer concepts or a larger layer"
        )
    matrix = acts.reshape(c, h * w).float()
    offset = matrix.amin(1, keepdim=True)
    v = matrix - offset
    weights, coefficients = nmf(v, k)
    error = float((v - weights @ coefficients).norm() / v.norm().clamp(min=_EPS))
    return coefficients.reshape(k, h, w), (weights + offset).T.contiguous(), error


def _concept_rows(tail: Tail, embeddings: Tensor) -> Tensor:
    """The layer output with every position set to each embedding: ``(K, *layer output)``."""
    act = tail.act
    k, c = embeddings.shape
    e = embeddings.to(act)
    if act.ndim == 4 and act.shape[1] == c:  # (1, C, h, w)
        return e[:, :, None, None].expand(k, *act.shape[1:]).contiguous()
    if act.shape[-1] == c:  # tokens (1, N, C) or channels last (1, h, w, C)
        return e.view(k, *([1] * (act.ndim - 2)), c).expand(k, *act.shape[1:]).contiguous()
    raise UsageError(
        f"dff: cannot lay {c}-channel concepts out on the layer output of shape "
        f"{tuple(act.shape)}; pick a layer whose output has the channels on axis 1 or last"
    )


def _score(tail: Tail, embeddings: Tensor, head: ClassHead, top: int) -> dict[str, Tensor]:
    logits = tail.run(_concept_rows(tail, embeddings))
    prediction = Prediction(logits, head, head.class_probabilities(logits))
    values, ids = prediction.top(top)
    return {
        "logits": logits,
        "probabilities": prediction.probabilities,
        "top_classes": ids,
        "top_probabilities": values,
    }


def concepts(
    model: nn.Module,
    x: Tensor,
    layer: LayerSpec = "auto",
    *,
    num_concepts: int = 5,
    top: int = 3,
    reshape: ReshapeFn | None = None,
    output_adapter: OutputAdapter | None = None,
    multilabel: bool = False,
    batch_size: int | None = None,
) -> list[Concepts]:
    """Every concept of every image of ``x`` at ``layer`` (one layer), with its top classes.

    One forward per image records the layer (eval mode, no gradients; modes and hooks are as
    before afterwards); the concepts are scored by one pass of the network after the layer.
    ``reshape`` lays token outputs out as for :func:`camscope.explain`; ``multilabel`` reads the
    classes as independent sigmoids.
    """
    if num_concepts < 1 or top < 1:
        raise UsageError("num_concepts and top must be at least 1")
    settings = Settings.read(
        {k: v for k, v in {"output_adapter": output_adapter, "batch_size": batch_size}.items() if v}
    )
    with model_lock(model):
        chosen = resolve_layers(model, layer, x)
        if len(chosen) != 1:
            raise UsageError(f"dff concepts are of one layer; got {[n for n, _ in chosen]}")
        name = chosen[0][0]
        shape_fn = reshape or spatial_reshape(model, name, (x.shape[-2], x.shape[-1]))
        found = []
        with tails(model, name, settings, "dff") as record:
            for img in range(x.shape[0]):
                tail = record(x[img : img + 1].detach())
                acts = to_spatial(shape_fn(tail.act), name)[0].float()
                maps, embeddings, error = _factorize(acts, num_concepts)
                head = class_head(tail.logits, multilabel)
                scored = _score(tail, embeddings, head, top)
                found.append(Concepts(name, maps, embeddings, error=error, **scored))
    return found


def _options(options: Mapping[str, Any]) -> int:
    return positive_int(options, "num_concepts", 5) or 5


@register_method(
    "dff",
    needs_gradients=False,
    paper="Collins et al., ECCV 2018",
    family="activation (factorization)",
    summary="Deep Feature Factorization: the NMF concept of the layer whose embedding scores "
    "the target highest",
    passes=2,
    passes_text="2 (a recording forward; the K concepts through the layers after the target)",
)
def dff(ctx: LayerContext) -> Tensor:
    """The map of the NMF concept whose embedding gives the target the highest probability."""
    k = _options(ctx.method_options)
    settings = Settings.read(ctx.method_options)
    ids = class_targets(ctx.class_ids, "dff")
    out = []
    with tails(ctx.model, ctx.layer, settings, "dff") as record:
        for img in range(ctx.input.shape[0]):
            maps, embeddings, _ = _factorize(ctx.activations[img], k)
            tail = record(ctx.input[img : img + 1].detach())
            logits = tail.run(_concept_rows(tail, embeddings))
            targets = ids[img][None].expand(k, -1)
            chosen = ctx.head.probabilities(logits, targets).argmax(0)  # a concept per target
            out.append(maps[chosen.to(maps.device)])
    return torch.stack(out).to(ctx.activations)
