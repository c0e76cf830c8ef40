"""Small helpers shared by the method files (no hooks, no model calls): tensor arithmetic, the
choice of a wrapper's base method, and reading the ``method_options`` of methods that run no
passes of their own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..core.ops import first_component
from ..core.registry import MethodSpec, lookup
from ..errors import UsageError
from ..perturbation import options as _options

__all__ = [
    "base_method",
    "channel_weighted",
    "first_component",
    "method_option",
    "option_choice",
    "spatial_mean",
]

#: Methods that run another method (their ``base_method`` option); they cannot wrap each other.
WRAPPERS = ("refinecam", "sess")


def base_method(options: Mapping[str, Any], default: str, wrapper: str) -> MethodSpec:
    """The registered method ``wrapper`` runs (its ``base_method`` option, else ``default``):
    neither a wrapper itself nor a guided method (which has no map per layer)."""
    name = str(_options.option(options, "base_method", default, str))
    spec = lookup(name)
    if spec.name in WRAPPERS:
        raise UsageError(f"{wrapper} cannot wrap {spec.name}; pick a plain CAM method")
    if spec.needs_guided_gradients:
        raise UsageError(f"{wrapper} needs a base method with a map per layer, not {spec.name}")
    return spec


def method_option(
    options: Mapping[str, Any], name: str, default: Any, kind: type | tuple[type, ...]
) -> Any:
    """``options[name]`` or ``default``, type-checked, unknown keys refused: the one reader of
    :mod:`camscope.perturbation.options` (``KNOWN_OPTIONS``), for one-pass methods (whose module
    then does not import the perturbation package, which the viewer reads as their cost)."""
    return _options.option(options, name, default, kind)


def option_choice(
    options: Mapping[str, Any], name: str, default: str, choices: tuple[str, ...]
) -> str:
    """A string option among ``choices`` (see :func:`method_option`)."""
    return _options.choice(options, name, default, choices)


def channel_weighted(weights: Tensor, activations: Tensor) -> Tensor:
    """Per-channel contributions ``w[b, k, c] * A[b, c]``: ``(B, K, C)``, ``(B, C, h, w)`` ->
    ``(B, K, C, h, w)``; the engine sums them over ``C``."""
    return weights[..., None, None] * activations[:, None]


def spatial_mean(t: Tensor) -> Tensor:
    """Mean over the last two (spatial) axes."""
    return t.mean(dim=(-2, -1))
