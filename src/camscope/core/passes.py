"""The engine's passes: one forward with taps on the chosen layers, one batched backward, and the
extra guided pass.

The forward runs everything before the first chosen layer under ``torch.no_grad()``; the layer's
tap swaps its output for a fresh leaf and turns recording on, so the graph starts at the layer.
One ``torch.autograd.grad`` call (never ``.backward()``) then gives every target's gradient at
every layer; methods that explain a score of their own (Finer-CAM's comparison with similar
classes) add its columns to that same call. Methods that read second derivatives (Shapley-CAM) get,
per target, one more backward that keeps its graph and one Hessian-vector product ``H A``
(:mod:`camscope.core.extra_scores`); like the first, these differentiate only the layers'
outputs, so no parameter's ``.grad`` is touched. Every hook here is scoped to the call
(:class:`~camscope.core.concurrency.PassScope`): a forward of the same model in another thread
passes through untouched.

A layer that cannot be explained (its output is not a tensor, it did not run, the scores do not
depend on it, its output has no spatial layout) is reported in :attr:`Passes.failed`, so that the
engine can go on with the other layers unless ``strict``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CamscopeError, TargetError, UsageError
from .concurrency import PassScope
from .context import LayerContext
from .extra_scores import SecondOrder, own_score_columns, second_order
from .layers import ReshapeFn, to_spatial
from .precision import forward_precision
from .registry import OwnScoreFn
from .reshape import spatial_reshape, token_facts
from .targets import (
    ClassHead,
    OutputAdapter,
    ResolvedTargets,
    TargetSpec,
    default_output_adapter,
    resolve_targets,
)

log = logging.getLogger(__name__)

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish)


class _Tap:
    """Forward hook that records a layer's output as the start (or a node) of the gradient graph."""

    def __init__(self) -> None:
        self.output: Tensor | None = None
        self.error: CamscopeError | None = None

    def __call__(self, _module: nn.Module, _inputs: Any, output: Any) -> Any:
        if not isinstance(output, Tensor):
            self.error = UsageError(
                f"the chosen layer returns {type(output).__name__}, not a tensor; pick a layer "
                "that outputs a feature tensor"
            )
            return None
        torch.set_grad_enabled(True)  # the prefix ran without a graph; record from here on
        tap = output if output.requires_grad else output.detach().requires_grad_()
        self.output = tap
        # Downstream in-place ops (functional ReLU(inplace=True)) must not change what we saved.
        return tap.clone()


@contextmanager
def scoped_hooks(scope: PassScope, pairs: Sequence[tuple[nn.Module, Any]]) -> Iterator[None]:
    """Register forward hooks that act only in ``scope``'s passes; removed on exit."""
    handles = []
    try:
        for module, hook in pairs:
            handles.append(module.register_forward_hook(scope.hook(hook)))
        yield
    finally:
        for handle in handles:
            handle.remove()


class _PositiveGradientGate(torch.autograd.Function):
    """Identity forward; backward passes only positive gradients (guided backpropagation)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.clamp(min=0)


def _gate(_module: nn.Module, _inputs: Any, output: Any) -> Any:
    return _PositiveGradientGate.apply(output) if isinstance(output, Tensor) else output


def batched_grad(
    scores: Tensor, inputs: list[Tensor], *, retain_graph: bool = False
) -> list[Tensor]:
    """Gradients of each score column w.r.t. ``inputs``: ``(B, K, ...)`` per input.

    Samples are independent in eval mode, so the gradient of the batch sum of column k gives every
    sample's own gradient; the K columns go through one vmapped backward (is_grads_batched).
    ``retain_graph`` keeps the graph for further calls (LeGrad differentiates one score per block).
    """
    k = scores.shape[1]
    if k == 1:
        grads = torch.autograd.grad(
            scores.sum(), inputs, allow_unused=True, retain_graph=retain_graph
        )
        return [_zeros_if_none(g, t).unsqueeze(1) for g, t in zip(grads, inputs)]
    eye = torch.eye(k, dtype=scores.dtype, device=scores.device)
    grad_outputs = eye[:, None, :].expand(k, scores.shape[0], k).contiguous()
    try:
        # retain_graph: if the batched backward fails part-way, the fallback needs the graph.
        grads = torch.autograd.grad(
            scores,
            inputs,
            grad_outputs=grad_outputs,
            is_grads_batched=True,
            allow_unused=True,
            retain_graph=True,
        )
    except RuntimeError as err:  # an op without a batching rule: fall back to one pass per target
        log.debug("batched backward unavailable (%s); looping over %d targets", err, k)
        columns = [
            torch.autograd.grad(scores[:, j].sum(), inputs, retain_graph=True, allow_unused=True)
            for j in range(k)
        ]
        grads = tuple(torch.stack(list(parts)) for parts in zip(*columns))
    return [
        _zeros_if_none(g, t.unsqueeze(0).expand(k, *t.shape)).transpose(0, 1)
        for g, t in zip(grads, inputs)
    ]


def _zeros_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


def _per_target_spatial(t: Tensor, shape_fn: ReshapeFn, name: str) -> Tensor:
    """``(B, K, ...)`` layer-shaped tensors -> ``(B, K, C, h, w)`` float32, as the methods read."""
    b, k = t.shape[:2]
    # contiguous: a channels-last model's maps reach the methods in the usual layout
    flat = to_spatial(shape_fn(t.detach().flatten(0, 1)), name).float().contiguous()
    return flat.reshape(b, k, *flat.shape[1:])


def _reaches(root: Tensor, tensors: list[Tensor]) -> list[bool]:
    """Whether each tensor is part of the autograd graph of ``root`` (a walk over grad_fn nodes)."""
    if root.grad_fn is None:
        return [False] * len(tensors)
    seen: set[int] = set()
    found_nodes: set[int] = set()
    found_leaves: set[int] = set()
    stack = [root.grad_fn]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        found_nodes.add(id(node))
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if isinstance(variable, Tensor):
            found_leaves.add(id(variable))
        stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return [
        (t.grad_fn is not None and id(t.grad_fn) in found_nodes) or id(t) in found_leaves
        for t in tensors
    ]


def raise_failures(failed: dict[str, CamscopeError]) -> None:
    """Raise the one error, or one error of the same kind that lists every layer's problem."""
    errors = list(failed.values())
    if len(errors) == 1:
        raise errors[0]
    kind = type(errors[0]) if all(type(e) is type(errors[0]) for e in errors) else UsageError
    raise kind("; ".join(str(e) for e in errors))


def is_callable_target(targets: TargetSpec) -> bool:
    return callable(targets) and not isinstance(targets, Tensor)


def _logits_or_none(
    output: Any, targets: TargetSpec, adapter: OutputAdapter | None
) -> Tensor | None:
    """Detached ``(B, classes)`` scores, or None when a callable target explains another output."""
    try:
        logits = (adapter or default_output_adapter)(output)
    except UsageError:
        if is_callable_target(targets):
            return None
        raise
    return logits.detach().float() if logits.ndim == 2 else None


@dataclass
class Passes:
    """What the shared forward and backward gave.

    Attributes:
        contexts: one :class:`LayerContext` per layer that can be explained.
        failed: layer -> the error that rules it out (empty when every layer works).
        resolved: the target scores and classes.
        logits: detached ``(B, classes)`` scores, or None for callable targets on other outputs.
        warnings: messages about the maps to come (a layer whose gradient is zero everywhere).
        zero_gradient_layers: the layers those messages are about.
    """

    contexts: list[LayerContext]
    failed: dict[str, CamscopeError]
    resolved: ResolvedTargets
    logits: Tensor | None
    warnings: list[str] = field(default_factory=list)
    zero_gradient_layers: set[str] = field(default_factory=set)


def forward_backward(
    model: nn.Module,
    x: Tensor,
    layers: list[tuple[str, nn.Module]],
    need_gradients: bool,
    targets: TargetSpec,
    adapter: OutputAdapter | None,
    reshape: ReshapeFn | None,
    *,
    multilabel: bool = False,
    strict: bool = True,
    own_scores: Mapping[str, OwnScoreFn] | None = None,
    hessian_for: Collection[str] = (),
    method_options: Mapping[str, Any] | None = None,
    precision: str = "fp32",
) -> Passes:
    """The shared forward (and, if ``need_gradients``, backward) pass; see the module docstring.

    With ``strict`` the first layer problem raises; otherwise it is recorded in ``failed``.
    ``own_scores`` (method -> its score rule, read with ``method_options``) add columns to the
    backward, ``hessian_for`` names the methods that get Hessian-vector products. ``precision``
    runs the forward under autocast (:mod:`camscope.core.precision`); the backward follows the
    forward's dtypes, and what the methods read is cast to float32 below.
    """
    scope = PassScope()
    taps = [_Tap() for _ in layers]
    pairs = [(module, tap) for (_, module), tap in zip(layers, taps)]
    with scoped_hooks(scope, pairs), scope.active(), forward_precision(precision, x.device):
        torch.set_grad_enabled(False)
        output = model(x)
        torch.set_grad_enabled(True)
    failed: dict[str, CamscopeError] = {}
    for (name, _), tap in zip(layers, taps):
        if tap.error is not None:
            failed[name] = tap.error
        elif tap.output is None:
            failed[name] = UsageError(
                f"layer {name!r} did not run in the forward pass; pick layers the model uses"
            )
    if failed and (strict or len(failed) == len(layers)):
        raise_failures(failed)
    resolved = resolve_targets(output, targets, adapter, multilabel)
    if resolved.scores.shape[0] != x.shape[0]:
        raise TargetError(
            f"the target gave {resolved.scores.shape[0]} scores for a batch of {x.shape[0]} "
            "images; a callable target must return one score per image"
        )
    live: list[tuple[str, Tensor]] = [
        (name, tap.output)
        for (name, _), tap in zip(layers, taps)
        if name not in failed and tap.output is not None
    ]
    # requires_grad alone is not enough: parameters after the tap make the scores require grad
    # even when the layer's output never reaches them (a side branch), which gave all-zero maps.
    reached = _reaches(resolved.scores, [t for _, t in live])
    for (name, _), ok in zip(live, reached):
        if not ok:
            failed[name] = UsageError(
                f"the target score does not depend on layer {name!r}; pick a layer whose "
                "output feeds the scores (see `camscope layers`)"
            )
    if failed and (strict or len(failed) == len(layers)):
        raise_failures(failed)
    live = [(name, t) for name, t in live if name not in failed]
    class_logits = None
    if own_scores and not is_callable_target(targets) and resolved.head is not None:
        class_logits = (adapter or default_output_adapter)(output)
    columns, column_errors = own_score_columns(
        class_logits, resolved, own_scores or {}, method_options or {}
    )
    k = resolved.scores.shape[1]
    # columns of the shared backward: the targets', then each first-order method's own
    first = [name for name in columns if name not in hessian_for]
    spans = {name: slice(k * (i + 1), k * (i + 2)) for i, name in enumerate(first)}
    outputs = [t for _, t in live]
    seconds = [SecondOrder() for _ in live]
    if hessian_for and live:  # first: these keep the graph, which the shared backward may free
        second_scores = {name: columns.get(name, resolved.scores) for name in hessian_for}
        seconds = second_order(second_scores, outputs, [name for name, _ in live])
    all_grads: list[Tensor | None] = [None] * len(live)
    if (need_gradients or columns or hessian_for) and live:
        scores = resolved.scores
        if first:
            scores = torch.cat([scores, *(columns[name] for name in first)], dim=1)
        all_grads = list(batched_grad(scores, outputs))
    passes = Passes([], failed, resolved, _logits_or_none(output, targets, adapter))
    for (name, act), grad, extra in zip(live, all_grads, seconds):
        # token / channels-last outputs are laid out from the model's own facts (reshape.py)
        shape_fn = reshape or spatial_reshape(model, name, (x.shape[-2], x.shape[-1]))
        try:
            spatial_act = to_spatial(shape_fn(act.detach()), name).float().contiguous()
            spatial_grad = None
            own: dict[str, Tensor] = {}
            if grad is not None:
                spatial_grad = _per_target_spatial(grad[:, :k], shape_fn, name)
                own = {m: _per_target_spatial(grad[:, s], shape_fn, name) for m, s in spans.items()}
            for method, second_grad in extra.gradients.items():
                if method in columns:  # the gradient of a second-order method's own score
                    own[method] = _per_target_spatial(second_grad, shape_fn, name)
            hvps = {m: _per_target_spatial(p, shape_fn, name) for m, p in extra.products.items()}
        except CamscopeError as err:
            if strict:
                raise
            passes.failed[name] = err
            continue
        if spatial_grad is not None:
            message = _zero_gradient_warning(model, name, act, spatial_grad)
            if message:
                passes.warnings.append(message)
                passes.zero_gradient_layers.add(name)
        passes.contexts.append(
            LayerContext(
                layer=name,
                activations=spatial_act,
                gradients=spatial_grad,
                scores=resolved.scores.detach().float(),
                class_ids=resolved.class_ids,
                input=x,
                model=model,
                head=resolved.head or ClassHead(),
                own_gradients=own,
                hessian_products=hvps,
                method_errors={
                    **column_errors,
                    **({m: extra.error for m in hessian_for} if extra.error else {}),
                },
            )
        )
    return passes


def _zero_gradient_warning(model: nn.Module, name: str, act: Tensor, grad: Tensor) -> str | None:
    """A warning when the target's gradient is zero at every position of the layer."""
    live = grad.flatten(2).any(-1)  # (B, K): some position has a non-zero gradient
    if bool(live.all()):
        return None
    dead = ~live
    images = sorted({int(i) for i in dead.nonzero()[:, 0].tolist()})
    from .families import family_layer

    suggestion = family_layer(model)
    use = (
        f"use layer {suggestion!r} (the family's default, `layer='auto'`)"
        if suggestion is not None and suggestion != name
        else "use an earlier layer (see `camscope layers MODEL`)"
    )
    prefix = token_facts(model).prefix_tokens
    if act.ndim == 3 and prefix:
        why = (
            "its patch tokens do not reach the score, only its class token does (in a "
            "class-token ViT the head reads the class token of the last block alone)"
        )
    else:
        why = "no position of this layer reaches the score"
    return (
        f"layer {name!r}: the gradient of the target score is zero at every position for "
        f"image(s) {images}, so every gradient map there is all zero: {why}; {use}"
    )


def guided_gradients(
    model: nn.Module,
    x: Tensor,
    resolved: ResolvedTargets,
    targets: TargetSpec,
    adapter: OutputAdapter | None,
    precision: str = "fp32",
) -> Tensor:
    """Input gradients with every activation module's backward passing positive gradients only.

    The targets are the classes the main pass chose, so top-k ties cannot pick other classes here.
    """
    scope = PassScope()
    gates = [(m, _gate) for m in model.modules() if isinstance(m, ACTIVATIONS)]
    x_leaf = x.detach().requires_grad_()
    with scoped_hooks(scope, gates), scope.active(), forward_precision(precision, x.device):
        torch.set_grad_enabled(True)
        output = model(x_leaf)
    if is_callable_target(targets) or resolved.head is None:
        scores = resolve_targets(output, targets, adapter).scores
    else:
        logits = (adapter or default_output_adapter)(output)
        scores = resolved.head.scores(logits, resolved.class_ids)
    (grad,) = batched_grad(scores, [x_leaf])
    return grad.detach().float()
