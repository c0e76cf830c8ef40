"""Small helpers shared by the method files (no hooks, no model calls): tensor arithmetic and
the choice of a wrapper's base method."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..core.ops import first_component
from ..core.registry import MethodSpec, lookup
from ..errors import UsageError
from ..perturbation.options import option

__all__ = ["base_method", "channel_weighted", "first_component", "spatial_mean"]

#: Methods that run another method (their ``base_method`` option); they cannot wrap each other.
WRAPPERS = ("refinecam", "sess")


def base_method(options: Mapping[str, Any], default: str, wrapper: str) -> MethodSpec:
    """The registered method ``wrapper`` runs (its ``base_method`` option, else ``default``):
    neither a wrapper itself nor a guided method (which has no map per layer)."""
    name = str(option(options, "base_method", default, str))
    spec = lookup(name)
    if spec.name in WRAPPERS:
        raise UsageError(f"{wrapper} cannot wrap {spec.name}; pick a plain CAM method")
    if spec.needs_guided_gradients:
        raise UsageError(f"{wrapper} needs a base method with a map per layer, not {spec.name}")
    return spec


def channel_weighted(weights: Tensor, activations: Tensor) -> Tensor:
    """Per-channel contributions ``w[b, k, c] * A[b, c]``: ``(B, K, C)``, ``(B, C, h, w)`` ->
    ``(B, K, C, h, w)``; the engine sums them over ``C``."""
    return weights[..., None, None] * activations[:, None]


def spatial_mean(t: Tensor) -> Tensor:
    """Mean over the last two (spatial) axes."""
    return t.mean(dim=(-2, -1))
