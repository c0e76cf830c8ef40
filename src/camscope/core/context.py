"""What a CAM method sees: the :class:`LayerContext` of one layer after the shared passes.

Methods import this module and :mod:`camscope.core.registry`, never the engine: the engine builds
contexts and calls the registered methods, so the arrows point from the engine to the methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

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
