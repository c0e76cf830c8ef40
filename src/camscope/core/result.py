"""What :func:`camscope.explain` returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Explanation:
    """Result of :func:`explain`.

    Attributes:
        maps: method -> ``(B, H, W)`` maps in [0, 1] at the input's resolution, on its device
            (``(B, K, H, W)`` for top-k targets); several layers are fused by the mean of their
            normalised maps, renormalised.
        raw: method -> signed map at layer resolution, before ReLU and normalisation (first layer when several;
            ``(B, [K,] 3, H, W)`` input-space gradients for the guided methods).
        layer: the layer name used (a list when several).
        targets: ``(B,)`` class ids (``(B, K)`` for top-k; ``-1`` for callable targets).
        scores: target scores (logits) in the same shape as ``targets``.
        probabilities: softmax probability of each target, or None for callable targets.
        logits: ``(B, classes)`` model scores, detached (None for callable targets on other outputs).
        layer_maps / layer_raw: layer -> method -> map, for every layer.
    """

    maps: dict[str, Tensor]
    raw: dict[str, Tensor]
    layer: str | list[str]
    targets: Tensor
    scores: Tensor
    probabilities: Tensor | None
    logits: Tensor | None
    layer_maps: dict[str, dict[str, Tensor]]
    layer_raw: dict[str, dict[str, Tensor]]
