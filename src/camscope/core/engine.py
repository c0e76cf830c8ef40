"""The one-pass engine: one forward, one backward, every gradient method.

``explain`` runs the model once with forward hooks on the chosen layers. Everything before the first
chosen layer runs under ``torch.no_grad()``: its hook swaps the layer output for a fresh leaf, turns
gradient recording on for the rest of the forward, and so the graph starts at the layer. One
``torch.autograd.grad`` call to the layer outputs (never ``.backward()``, never parameter ``.grad``)
then serves every requested method; several targets (top-k) share it through a batched
vector-Jacobian product (:mod:`camscope.core.passes`); a method that explains a score of its own
(Finer-CAM) adds its columns to that product, and one that reads second derivatives (Shapley-CAM)
adds, per target, a backward that keeps its graph and a Hessian-vector product
(:mod:`camscope.core.extra_scores`). Guided backpropagation needs gradients with
respect to the input under a different ReLU rule, so methods that use it add one guided
forward/backward pass. The methods' maps are put together in :mod:`camscope.core.assemble`.

**Modes.** By default (``mode="eval"``) the model is explained in eval mode, whatever mode the
caller left it in: a model in train mode would normalise a single image with its own batch-norm
statistics and drop units at random, and give silently wrong maps. ``mode="as-is"`` keeps the
caller's modes (with a warning when batch-norm in train mode sees a single image).

**No side effects.** Hooks are removed and every module's ``training`` flag, ``requires_grad``
flag, parameter ``.grad`` and buffer (batch-norm running statistics in train mode) is as before,
also after an exception.

**Threads.** Calls on one model from several threads are correct: each call holds the model's
re-entrant lock (:func:`camscope.core.concurrency.model_lock`), so calls on one model run one after
another while calls on different models run in parallel, and every hook acts only on the passes of
the call that made it, so a plain ``model(x)`` in another thread is neither recorded nor changed
(it does see the model in eval mode while a call on a train-mode model runs).

**Skipping.** A method or layer that cannot run (``cam`` at a layer that does not feed global
average pooling, a layer the target does not depend on) is skipped and reported in
``Explanation.skipped`` while the others are returned; ``strict=True`` raises instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..methods import get_method
from .assemble import assemble, layer_map
from .concurrency import model_lock
from .layers import LayerSpec, ReshapeFn, resolve_layers
from .passes import forward_backward, guided_gradients
from .precision import forward_precision
from .result import Explanation, log_warning
from .targets import OutputAdapter, TargetSpec
from .unsupported import reject_unexplainable

log = logging.getLogger(__name__)

MODES = ("eval", "as-is")

__all__ = ["MODES", "explain", "layer_map"]


@contextmanager
def _no_side_effects(model: nn.Module, mode: str) -> Iterator[None]:
    """Restore modes and, for models with modules in train mode, buffers (BN statistics); in
    ``eval`` mode, put the model in eval mode for the duration."""
    modes = [(m, m.training) for m in model.modules()]
    training = any(flag for _, flag in modes)
    saved = None
    if training:
        saved = {k: v.detach().clone() for k, v in model.named_buffers()}
    grad_mode = torch.is_grad_enabled()
    try:
        if training and mode == "eval":
            model.eval()  # through train(False), which models may override (frozen BN, ...)
        yield
    finally:
        torch.set_grad_enabled(grad_mode)
        for module, was in modes:
            if module.training != was:  # nn.Module.__setattr__ is slow; touch only changes
                module.training = was
        if saved is not None:
            with torch.no_grad():
                for key, value in model.named_buffers():
                    if key in saved:
                        value.copy_(saved[key])


def _mode_warnings(model: nn.Module, x: Tensor, mode: str) -> list[str]:
    """Under ``as-is``: batch-norm layers in train mode normalise with the batch's statistics."""
    if mode != "as-is":
        return []
    norms = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    if not norms:
        return []
    shown = ", ".join(repr(n) for n in norms[:3]) + (
        f" and {len(norms) - 3} more" if len(norms) > 3 else ""
    )
    if x.shape[0] == 1:
        message = (
            f"mode='as-is': batch-norm layer(s) {shown} are in train mode and see a single "
            "image, so they normalise it with its own statistics instead of the running ones: "
            "the prediction and the maps differ from eval mode (use mode='eval', the default, "
            "or CLI without --as-is)"
        )
    else:
        message = (
            f"mode='as-is': batch-norm layer(s) {shown} are in train mode, so each image's "
            f"prediction and maps depend on the other {x.shape[0] - 1} image(s) of the batch"
        )
    log_warning(log, message)
    return [message]


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


def _bound(
    model: nn.Module,
    layer: str,
    output_adapter: OutputAdapter | None,
    reshape: ReshapeFn | None,
    eigen_smooth: bool,
    mode: str,
    multilabel: bool,
    precision: str = "fp32",
) -> Callable[..., Explanation]:
    """:func:`explain` bound to one call's settings and one layer (``LayerContext.explain``):
    wrapper methods (SESS) explain other inputs with a base method through it. Strict, so that a
    base method's failure reaches the wrapper."""

    def run(
        x: Tensor,
        methods: str | Sequence[str],
        targets: TargetSpec,
        method_options: Mapping[str, Any] | None = None,
    ) -> Explanation:
        return explain(
            model,
            x,
            methods,
            layer,
            targets,
            output_adapter=output_adapter,
            reshape=reshape,
            eigen_smooth=eigen_smooth,
            method_options=method_options,
            strict=True,
            mode=mode,
            multilabel=multilabel,
            precision=precision,
        )

    return run


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
    strict: bool = False,
    mode: str = "eval",
    multilabel: bool = False,
    precision: str = "fp32",
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
        strict: raise on the first method or layer that cannot run instead of skipping it
            (skipped ones are listed in ``Explanation.skipped`` with the reason).
        mode: ``"eval"`` (default) explains the model in eval mode and restores the caller's
            modes afterwards; ``"as-is"`` keeps the modes the caller set (batch-norm in train mode
            then normalises with the batch's own statistics: a warning says so).
        multilabel: the classes are independent sigmoids (probabilities ``sigmoid(logit)``)
            rather than a softmax. Single-logit models are always read as binary sigmoid
            classifiers (targets 0 = negative, 1 = positive; :mod:`camscope.core.targets`).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` (CUDA): the shared forward
            and guided passes run under :func:`torch.autocast` (and so their backward); the
            activations, gradients and scores the methods read are float32, and so is every
            method's math (:mod:`camscope.core.precision`). Approximate: on EfficientNet-Lite0
            the bf16 maps correlate r >= 0.999 with float32 ones (``benchmarks/dataset.py``).
            Methods with passes of their own (Score-CAM's masked inputs) keep their own
            ``precision`` method option.

    Example:
        >>> res = explain(model, x, methods=["gradcam", "gradcam++"], targets=[285])  # doctest: +SKIP
        >>> res.maps["gradcam"].shape  # doctest: +SKIP
        torch.Size([1, 224, 224])
    """
    _check_input(model, x)
    forward_precision(precision, x.device)  # an unknown name or fp16 on a CPU: say so first
    if mode not in MODES:
        raise UsageError(f"mode must be one of {list(MODES)}, got {mode!r}")
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
            strict=strict,
            mode=mode,
            multilabel=multilabel,
            precision=precision,
        )
    with model_lock(model), _no_side_effects(model, mode):
        notes = _mode_warnings(model, x, mode)
        layers = resolve_layers(model, layer, x)
        passes = forward_backward(
            model,
            x,
            layers,
            any(s.needs_gradients for s in specs),
            targets,
            output_adapter,
            reshape,
            multilabel=multilabel,
            strict=strict,
            own_scores={s.name: s.own_score for s in specs if s.own_score is not None},
            hessian_for=[s.name for s in specs if s.needs_hessian],
            method_options=options,
            precision=precision,
        )
        if any(s.needs_guided_gradients for s in specs):
            guided = guided_gradients(model, x, passes.resolved, targets, output_adapter, precision)
            for ctx in passes.contexts:
                ctx.guided_gradients = guided
        for ctx in passes.contexts:
            ctx.method_options = options
            ctx.explain = _bound(
                model, ctx.layer, output_adapter, reshape, eigen_smooth, mode, multilabel, precision
            )
        # Inside the guard: perturbation methods run further passes through the model.
        return assemble(
            specs, passes, x, targets, eigen_smooth=eigen_smooth, strict=strict, warnings=notes
        )
