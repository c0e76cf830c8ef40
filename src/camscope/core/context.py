"""What a CAM method sees: the :class:`LayerContext` of one layer after the shared passes.

Methods import this module and :mod:`camscope.core.registry`, never the engine: the engine builds
contexts and calls the registered methods, so the arrows point from the engine to the methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..errors import CamscopeError, TargetError
from .targets import ClassHead

#: ``explain(x, methods, targets, method_options=None) -> Explanation``: the engine's
#: :func:`camscope.explain` bound to one call's model, layer, output adapter, reshape, mode and
#: label kind (see ``LayerContext.explain``).
ExplainFn = Callable[..., Any]


@dataclass
class LayerContext:
    """Everything a method may read for one layer; all tensors are float32 and detached.

    Attributes:
        layer: the layer's dotted name.
        activations: ``(B, C, h, w)`` layer output.
        gradients: ``(B, K, C, h, w)`` gradient of each target score, or None if no method asked.
        scores: ``(B, K)`` target scores (logits; ``-logit`` for class 0 of a single-logit model).
        class_ids: ``(B, K)`` target classes, ``-1`` for callable targets.
        input: the input batch ``(B, 3, H, W)``.
        model: the model (read-only use: methods must not run hooks or change modes).
        guided_gradients: ``(B, K, 3, H, W)`` guided-backprop input gradients, or None.
        cache: per-layer scratch space for methods that build on others (guided Grad-CAM).
        method_options: the ``method_options`` passed to :func:`explain` (batch size, progress
            callback, seed, ...; see ``camscope.perturbation.KNOWN_OPTIONS``).
        head: how logits become target scores and probabilities (softmax, single-logit binary or
            multi-label sigmoid; :class:`~camscope.core.targets.ClassHead`). Methods that run
            their own passes score them with ``head.scores`` / ``head.probabilities``.
        explain: the engine's ``explain`` bound to this call (same model, this layer, output
            adapter, reshape, mode; ``strict``), for wrappers that explain other inputs with a
            base method (SESS explains crops); None outside the engine. Methods never import
            the engine: it hands them this instead.
        own_gradients: method name -> ``(B, K, C, h, w)`` gradient of the score that method
            explains instead of the target score (registered ``own_score``; class targets only).
        hessian_products: method name -> ``(B, K, C, h, w)`` Hessian of that method's score times
            the activations, ``H A`` (registered ``needs_hessian``).
        method_errors: method name -> why the engine could not prepare what that method reads
            at this layer (its own score from bad options, second derivatives the model lacks);
            the ``require_*`` accessors raise it, so the method is skipped with that reason.
    """

    layer: str
    activations: Tensor
    gradients: Tensor | None
    scores: Tensor
    class_ids: Tensor
    input: Tensor
    model: nn.Module
    guided_gradients: Tensor | None = None
    cache: dict[str, Tensor] = field(default_factory=dict)
    method_options: Mapping[str, Any] = field(default_factory=dict)
    head: ClassHead = field(default_factory=ClassHead)
    explain: ExplainFn | None = None
    own_gradients: dict[str, Tensor] = field(default_factory=dict)
    hessian_products: dict[str, Tensor] = field(default_factory=dict)
    method_errors: dict[str, CamscopeError] = field(default_factory=dict)

    def require_gradients(self) -> Tensor:
        if self.gradients is None:
            raise RuntimeError(
                "gradients were not computed; register the method with needs_gradients"
            )
        return self.gradients

    def require_explain(self, method: str) -> ExplainFn:
        if self.explain is None:
            raise RuntimeError(f"{method} explains other inputs; it runs inside camscope.explain")
        return self.explain

    def require_own_gradients(self, method: str) -> Tensor:
        """The gradients of ``method``'s own score; a :class:`TargetError` when the target gave no
        class logits to build it from (a callable target)."""
        if method in self.method_errors:
            raise self.method_errors[method]
        if method not in self.own_gradients:
            raise TargetError(
                f"{method} explains a score it builds from the class logits, and this call has "
                "none (a callable target, or an output without (batch, classes) scores); pass "
                "class indices or 'topK' as targets"
            )
        return self.own_gradients[method]

    def require_hessian_products(self, method: str) -> Tensor:
        """``H A`` of ``method``'s score; the reason when the model has no second derivatives."""
        if method in self.method_errors:
            raise self.method_errors[method]
        if method not in self.hessian_products:
            raise RuntimeError(
                "Hessian products were not computed; register the method with needs_hessian"
            )
        return self.hessian_products[method]
