"""Score columns and second derivatives that some methods add to the engine's shared passes.

A method registered with ``own_score`` explains a score of its own instead of the target score
(Finer-CAM: the target minus its most similar classes; Shapley-CAM: the ReST utility). Its
``(B, K)`` columns join the target scores in the one batched ``torch.autograd.grad`` call of
:mod:`camscope.core.passes`, unless the method also reads second derivatives
(``needs_hessian``): then, per target column, one ``torch.autograd.grad`` keeps its graph
(``create_graph``) and one more differentiates ``<dS/dA, A>`` with ``A`` held fixed, which gives
``H A``, the Hessian of the score with respect to the layer times the layer's activations. Every
call differentiates only the layers' outputs, never the parameters, so no ``.grad`` is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import CamscopeError, UnsupportedModelError
from .registry import OwnScoreFn
from .targets import ResolvedTargets


def own_score_columns(
    logits: Tensor | None,
    resolved: ResolvedTargets,
    rules: Mapping[str, OwnScoreFn],
    options: Mapping[str, Any],
) -> tuple[dict[str, Tensor], dict[str, CamscopeError]]:
    """The ``(B, K)`` scores each method explains instead of the target scores (registered
    ``own_score``), and the methods whose options ruled theirs out. ``logits`` are the
    differentiable class logits, None for a callable target: then there is nothing to build the
    scores from, and the methods say so when they run."""
    columns: dict[str, Tensor] = {}
    errors: dict[str, CamscopeError] = {}
    if logits is None or resolved.head is None:
        return columns, errors
    for name, rule in rules.items():
        try:
            column = rule(logits, resolved.class_ids, resolved.head, options)
        except CamscopeError as err:  # bad method options: that method is skipped with this
            errors[name] = err
            continue
        if column is None:
            continue
        if column.shape != resolved.scores.shape:
            raise ValueError(
                f"the own score of {name} has shape {tuple(column.shape)}, the targets "
                f"{tuple(resolved.scores.shape)}"
            )
        columns[name] = column
    return columns, errors


@dataclass
class SecondOrder:
    """What the second-order methods read at one layer.

    Attributes:
        gradients: method -> ``(B, K, ...)`` gradient of its score (the graph-keeping backward).
        products: method -> ``(B, K, ...)`` Hessian of its score times the activations, ``H A``.
        error: why the model gave no second derivatives after this layer, or None.
    """

    gradients: dict[str, Tensor] = field(default_factory=dict)
    products: dict[str, Tensor] = field(default_factory=dict)
    error: CamscopeError | None = None


def second_order(
    scores: Mapping[str, Tensor], taps: list[Tensor], layers: list[str]
) -> list[SecondOrder]:
    """Gradients and Hessian-vector products of every method's ``(B, K)`` score at every tap.

    Per score column ``j``: one backward to every tap with ``create_graph`` (the gradient keeps
    the graph that made it), then per tap one backward of ``<dS_j/dA, A>`` with ``A`` held fixed,
    which is ``H A``. These run apart from the shared batched backward, so the first-order methods
    keep their single vmapped call and no graph of theirs is kept; unbatched, a backward without
    a derivative of its own is seen (under vmap PyTorch drops it silently). A layer after which
    the model has no second derivatives gets an error instead (the methods that asked for them
    are skipped there); running out of memory is not such a case and is raised.
    """
    found = [SecondOrder() for _ in taps]
    columns: dict[str, list[list[Tensor]]] = {name: [[] for _ in taps] for name in scores}
    products: dict[str, list[list[Tensor]]] = {name: [[] for _ in taps] for name in scores}
    for name, score in scores.items():
        for j in range(score.shape[1]):
            try:
                grads = torch.autograd.grad(
                    score[:, j].sum(), taps, create_graph=True, retain_graph=True, allow_unused=True
                )
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as err:
                for i, layer in enumerate(layers):
                    found[i].error = found[i].error or _no_second_derivatives(layer, str(err))
                continue
            for i, (grad, tap) in enumerate(zip(grads, taps)):
                if found[i].error is not None:
                    continue
                grad = torch.zeros_like(tap) if grad is None else grad
                product, error = _hessian_product(grad, tap, layers[i])
                found[i].error = error
                columns[name][i].append(grad.detach())
                products[name][i].append(product)
    for i, result in enumerate(found):
        if result.error is None:
            result.gradients = {n: torch.stack(c[i], dim=1) for n, c in columns.items()}
            result.products = {n: torch.stack(p[i], dim=1) for n, p in products.items()}
    return found


def _hessian_product(grad: Tensor, tap: Tensor, layer: str) -> tuple[Tensor, CamscopeError | None]:
    """``d<grad, A>/dA`` with ``A`` fixed (``H A``); zeros where ``grad`` does not depend on
    ``A`` (a head that is linear in it)."""
    if _once_differentiable(grad):
        why = "an autograd Function whose backward is marked once_differentiable"
        return torch.zeros_like(tap), _no_second_derivatives(layer, why)
    if not grad.requires_grad:
        return torch.zeros_like(tap), None
    try:
        (product,) = torch.autograd.grad(
            grad, tap, grad_outputs=tap.detach(), retain_graph=True, allow_unused=True
        )
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as err:
        return torch.zeros_like(tap), _no_second_derivatives(layer, str(err))
    return (torch.zeros_like(tap) if product is None else product).detach(), None


def _no_second_derivatives(layer: str, why: str) -> UnsupportedModelError:
    advice = "pick a layer after the op that lacks them"
    if "attention" in why:
        advice = (
            "fused attention kernels have none: for a timm ViT set `block.attn.fused_attn = "
            "False` in every block (or call timm.layers.set_fused_attn(False) before creating "
            "the model)"
        )
    return UnsupportedModelError(
        f"second derivatives are not available after layer {layer!r} ({why}); a method that "
        f"needs them (Shapley-CAM) cannot run there: {advice}"
    )


def _once_differentiable(grad: Tensor) -> bool:
    """Whether the graph of a first gradient holds the error node of a ``once_differentiable``
    backward: differentiating through it would silently give zeros (it is not connected)."""
    if grad.grad_fn is None:
        return False
    seen: set[int] = set()
    stack = [grad.grad_fn]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if type(node).__name__ in ("Error", "DelayedError"):
            return True
        stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return False
