"""The one-pass engine: one forward, one backward, every gradient method.

``explain`` runs the model once with forward hooks on the chosen layers. Everything before the first
chosen layer runs under ``torch.no_grad()``: its hook swaps the layer output for a fresh leaf, turns
gradient recording on for the rest of the forward, and so the graph starts at the layer. One
``torch.autograd.grad`` call to the layer outputs (never ``.backward()``, never parameter ``.grad``)
then serves every requested method; several targets (top-k) share it through a batched
vector-Jacobian product. Guided backpropagation needs gradients with respect to the input under a
different ReLU rule, so methods that use it add one guided forward/backward pass.

No side effects: hooks are removed and every module's ``training`` flag, ``requires_grad`` flag,
parameter ``.grad`` and buffer (batch-norm running statistics in train mode) is as before, also after
an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import TargetError, UsageError
from ..methods import get_method
from .context import LayerContext
from .layers import LayerSpec, ReshapeFn, resolve_layers, to_spatial
from .ops import first_component, normalise, to_input_space
from .registry import MethodSpec
from .reshape import spatial_reshape
from .result import Explanation
from .targets import (
    OutputAdapter,
    ResolvedTargets,
    TargetSpec,
    default_output_adapter,
    resolve_targets,
)
from .unsupported import reject_unexplainable

log = logging.getLogger(__name__)

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish)


class _Tap:
    """Forward hook that records a layer's output as the start (or a node) of the gradient graph."""

    def __init__(self) -> None:
        self.output: Tensor | None = None

    def __call__(self, _module: nn.Module, _inputs: Any, output: Any) -> Any:
        if not isinstance(output, Tensor):
            raise UsageError(
                f"the chosen layer returns {type(output).__name__}, not a tensor; pick a layer "
                "that outputs a feature tensor"
            )
        torch.set_grad_enabled(True)  # the prefix ran without a graph; record from here on
        tap = output if output.requires_grad else output.detach().requires_grad_()
        self.output = tap
        # Downstream in-place ops (functional ReLU(inplace=True)) must not change what we saved.
        return tap.clone()


@contextmanager
def _hooks(pairs: Sequence[tuple[nn.Module, Any]]) -> Iterator[None]:
    handles = []
    try:
        for module, hook in pairs:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _no_side_effects(model: nn.Module) -> Iterator[None]:
    """Restore modes and, for models with modules in train mode, buffers (BN statistics)."""
    modes = [(m, m.training) for m in model.modules()]
    saved = None
    if any(mode for _, mode in modes):
        saved = {k: v.detach().clone() for k, v in model.named_buffers()}
    grad_mode = torch.is_grad_enabled()
    try:
        yield
    finally:
        torch.set_grad_enabled(grad_mode)
        for module, mode in modes:
            if module.training != mode:  # nn.Module.__setattr__ is slow; touch only changes
                module.training = mode
        if saved is not None:
            with torch.no_grad():
                for key, value in model.named_buffers():
                    if key in saved:
                        value.copy_(saved[key])


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


def _batched_grad(scores: Tensor, inputs: list[Tensor]) -> list[Tensor]:
    """Gradients of each score column w.r.t. ``inputs``: ``(B, K, ...)`` per input.

    Samples are independent in eval mode, so the gradient of the batch sum of column k gives every
    sample's own gradient; the K columns go through one vmapped backward (is_grads_batched).
    """
    k = scores.shape[1]
    if k == 1:
        grads = torch.autograd.grad(scores.sum(), inputs, allow_unused=True)
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


def _check_input(model: Any, x: Any) -> None:
    reject_unexplainable(model)  # TorchScript / ONNX: no hooks, no autograd
    if torch.is_inference_mode_enabled():
        raise UsageError(
            "explain() was called inside torch.inference_mode(), which forbids gradients; "
            "call it outside inference_mode (torch.no_grad() is fine)"
        )
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise UsageError(
            f"the input must be a float tensor of shape (batch, channels, height, width); "
            f"got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}"
        )


def explain(
    model: nn.Module,
    x: Tensor,
    methods: str | Sequence[str] = "gradcam",
    layer: LayerSpec = "auto",
    targets: TargetSpec = "top1",
    *,
    output_adapter: OutputAdapter | None = None,
    reshape: ReshapeFn | None = None,
    eigen_smooth: bool = False,
    aug_smooth: bool = False,
    method_options: Mapping[str, Any] | None = None,
) -> Explanation:
    """Explain ``model``'s decision on the batch ``x`` with one or more CAM methods.

    Args:
        model: any ``nn.Module``; its modes, flags, hooks and gradients are left as they were.
        x: preprocessed input ``(B, C, H, W)``; maps come back on its device at its H, W.
        methods: a registered name or several (``camscope.list_methods()``).
        layer: see :mod:`camscope.core.layers`.
        targets: see :mod:`camscope.core.targets`.
        output_adapter: maps the model output to ``(B, classes)`` scores (default handles tensors,
            tuples, dicts and ``ModelOutput`` objects).
        reshape: maps a layer output to ``(B, C, h, w)`` (for token layers of transformers).
        eigen_smooth: replace the channel sum of channel-weighted methods by the first principal
            component of the weighted activations (no effect on eigencam/eigengradcam/guided).
        aug_smooth: average the maps over test-time flips and scales (:mod:`camscope.core.smoothing`).
        method_options: per-method options such as ``batch_size``, ``progress``, ``seed``
            (``camscope.perturbation.KNOWN_OPTIONS``); ``output_adapter`` is passed on to them.

    Example:
        >>> res = explain(model, x, methods=["gradcam", "gradcam++"], targets=[285])  # doctest: +SKIP
        >>> res.maps["gradcam"].shape  # doctest: +SKIP
        torch.Size([1, 224, 224])
    """
    _check_input(model, x)
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise UsageError("no method requested; pass methods=['gradcam', ...]")
    specs = [get_method(n) for n in names]
    options = dict(method_options or {})
    if output_adapter is not None:
        options.setdefault("output_adapter", output_adapter)
    if aug_smooth:
        from .smoothing import aug_smooth_explain

        return aug_smooth_explain(
            explain,
            model,
            x,
            names,
            layer,
            targets,
            output_adapter=output_adapter,
            reshape=reshape,
            eigen_smooth=eigen_smooth,
            method_options=options,
        )
    with _no_side_effects(model):
        layers = resolve_layers(model, layer, x)
        contexts, resolved, logits = _forward_backward(
            model, x, layers, specs, targets, output_adapter, reshape
        )
        if any(s.needs_guided_gradients for s in specs):
            guided = _guided_gradients(model, x, resolved, targets, output_adapter)
            for ctx in contexts:
                ctx.guided_gradients = guided
        for ctx in contexts:
            ctx.method_options = options
        # Inside the guard: perturbation methods run further passes through the model.
        return _assemble(specs, contexts, resolved, logits, x, targets, eigen_smooth)


def _forward_backward(
    model: nn.Module,
    x: Tensor,
    layers: list[tuple[str, nn.Module]],
    specs: list[MethodSpec],
    targets: TargetSpec,
    adapter: OutputAdapter | None,
    reshape: ReshapeFn | None,
) -> tuple[list[LayerContext], ResolvedTargets, Tensor | None]:
    taps = [_Tap() for _ in layers]
    with _hooks([(module, tap) for (_, module), tap in zip(layers, taps)]):
        torch.set_grad_enabled(False)
        output = model(x)
        torch.set_grad_enabled(True)
    missing = [name for (name, _), tap in zip(layers, taps) if tap.output is None]
    if missing:
        raise UsageError(
            f"layer(s) {missing} did not run in the forward pass; pick layers the model uses"
        )
    resolved = resolve_targets(output, targets, adapter)
    if resolved.scores.shape[0] != x.shape[0]:
        raise TargetError(
            f"the target gave {resolved.scores.shape[0]} scores for a batch of {x.shape[0]} "
            "images; a callable target must return one score per image"
        )
    outputs = [tap.output for tap in taps if tap.output is not None]
    # requires_grad alone is not enough: parameters after the tap make the scores require grad
    # even when the layer's output never reaches them (a side branch), which gave all-zero maps.
    unreached = [
        name for (name, _), ok in zip(layers, _reaches(resolved.scores, outputs)) if not ok
    ]
    if unreached:
        raise UsageError(
            f"the target score does not depend on layer(s) {unreached}; pick a layer whose "
            "output feeds the scores (see `camscope layers`)"
        )
    gradients: list[Tensor | None] = [None] * len(outputs)
    if any(s.needs_gradients for s in specs):
        gradients = list(_batched_grad(resolved.scores, outputs))
    logits = _logits_or_none(output, targets, adapter)
    contexts = []
    for (name, _), act, grad in zip(layers, outputs, gradients):
        # token / channels-last outputs are laid out from the model's own facts (reshape.py)
        shape_fn = reshape or spatial_reshape(model, name, (x.shape[-2], x.shape[-1]))
        spatial_act = to_spatial(shape_fn(act.detach()), name).float()
        spatial_grad = None
        if grad is not None:
            b, k = grad.shape[:2]
            flat = to_spatial(shape_fn(grad.detach().flatten(0, 1)), name).float()
            spatial_grad = flat.reshape(b, k, *flat.shape[1:])
        contexts.append(
            LayerContext(
                layer=name,
                activations=spatial_act,
                gradients=spatial_grad,
                scores=resolved.scores.detach().float(),
                class_ids=resolved.class_ids,
                input=x,
                model=model,
            )
        )
    return contexts, resolved, logits


def _is_callable_target(targets: TargetSpec) -> bool:
    return callable(targets) and not isinstance(targets, Tensor)


def _logits_or_none(
    output: Any, targets: TargetSpec, adapter: OutputAdapter | None
) -> Tensor | None:
    """Detached ``(B, classes)`` scores, or None when a callable target explains another output."""
    try:
        logits = (adapter or default_output_adapter)(output)
    except UsageError:
        if _is_callable_target(targets):
            return None
        raise
    return logits.detach().float() if logits.ndim == 2 else None


def _guided_gradients(
    model: nn.Module,
    x: Tensor,
    resolved: ResolvedTargets,
    targets: TargetSpec,
    adapter: OutputAdapter | None,
) -> Tensor:
    """Input gradients with every activation module's backward passing positive gradients only.

    The targets are the classes the main pass chose, so top-k ties cannot pick other classes here.
    """
    gates = [(m, _gate) for m in model.modules() if isinstance(m, _ACTIVATIONS)]
    x_leaf = x.detach().requires_grad_()
    with _hooks(gates):
        torch.set_grad_enabled(True)
        output = model(x_leaf)
    if _is_callable_target(targets):
        scores = resolve_targets(output, targets, adapter).scores
    else:
        scores = (adapter or default_output_adapter)(output).gather(1, resolved.class_ids)
    (grad,) = _batched_grad(scores, [x_leaf])
    return grad.detach().float()


def layer_map(spec: MethodSpec, ctx: LayerContext, eigen_smooth: bool = False) -> Tensor:
    """A method's raw map at layer resolution, ``(B, K, h, w)`` (guided: ``(B, K, 3, H, W)``).

    Channel contributions are summed over channels, or with ``eigen_smooth`` projected on their
    first principal component (Eigen smoothing, as in Muhammad & Yeasin 2020), which removes noise
    spread across many channels.
    """
    out = spec.fn(ctx).float()
    if not spec.channel_contributions:
        return out
    if eigen_smooth:
        b, k = out.shape[:2]
        return first_component(out.flatten(0, 1)).reshape(b, k, *out.shape[-2:])
    return out.sum(dim=2)


def _assemble(
    specs: list[MethodSpec],
    contexts: list[LayerContext],
    resolved: ResolvedTargets,
    logits: Tensor | None,
    x: Tensor,
    targets: TargetSpec,
    eigen_smooth: bool = False,
) -> Explanation:
    size = (x.shape[-2], x.shape[-1])
    layer_maps: dict[str, dict[str, Tensor]] = {}
    layer_raw: dict[str, dict[str, Tensor]] = {}
    with torch.no_grad():
        for ctx in contexts:
            raws = {spec.name: layer_map(spec, ctx, eigen_smooth) for spec in specs}
            layer_raw[ctx.layer] = raws
            layer_maps[ctx.layer] = {name: to_input_space(raw, size) for name, raw in raws.items()}
        fused = {}
        for spec in specs:
            stack = torch.stack([layer_maps[c.layer][spec.name] for c in contexts])
            fused[spec.name] = stack[0] if len(contexts) == 1 else normalise(stack.mean(0))
    squeeze = not resolved.per_class

    def shape(t: Tensor) -> Tensor:
        return t.squeeze(1) if squeeze else t

    probabilities = None
    if logits is not None and not _is_callable_target(targets):
        probabilities = shape(logits.softmax(1).gather(1, resolved.class_ids.to(logits.device)))
    first = contexts[0].layer
    names = [c.layer for c in contexts]
    return Explanation(
        maps={k: shape(v) for k, v in fused.items()},
        raw={k: shape(v) for k, v in layer_raw[first].items()},
        layer=names[0] if len(names) == 1 else names,
        targets=shape(resolved.class_ids),
        scores=shape(resolved.scores.detach().float()),
        probabilities=probabilities,
        logits=logits,
        layer_maps={lay: {k: shape(v) for k, v in d.items()} for lay, d in layer_maps.items()},
        layer_raw={lay: {k: shape(v) for k, v in d.items()} for lay, d in layer_raw.items()},
    )
