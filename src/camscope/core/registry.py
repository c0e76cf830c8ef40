"""The method registry: ``@register_method("name")`` records a CAM method by name.

The CLI's choices, the docs table and the contract tests all read this registry, so adding a method
means one new file under ``camscope/methods/`` and one import line there. The registry itself knows
no method: :mod:`camscope.methods` imports every built-in method file (which registers it) and
offers the lookups (``list_methods``, ``get_method``) over the complete registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError, closest

if TYPE_CHECKING:
    from torch import Tensor

    from .context import LayerContext

MethodFn = Callable[["LayerContext"], "Tensor"]


@dataclass(frozen=True)
class MethodSpec:
    """What the engine needs to know about a registered method.

    Attributes:
        name: the registry key (``"gradcam++"``).
        fn: maps a :class:`~camscope.core.context.LayerContext` to a raw map of shape ``(B, K, h, w)`` at
            layer resolution, per-channel contributions ``(B, K, C, h, w)`` (see
            ``channel_contributions``), or ``(B, K, 3, H, W)`` for input-space (guided) attributions.
        needs_gradients: whether the method reads ``ctx.gradients`` (one shared backward pass).
        needs_guided_gradients: whether it reads ``ctx.guided_gradients`` (one extra guided pass).
        class_specific: whether the map depends on the target class.
        channel_contributions: the method returns per-channel contributions ``(B, K, C, h, w)``
            and the engine sums them over channels (or, with ``eigen_smooth``, takes their first
            principal component); otherwise it returns the map itself.
        summary: one line for ``camscope methods`` and the docs table.
        paper: short citation.
    """

    name: str
    fn: MethodFn
    needs_gradients: bool
    needs_guided_gradients: bool
    class_specific: bool
    channel_contributions: bool
    summary: str
    paper: str


_METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    needs_gradients: bool = True,
    needs_guided_gradients: bool = False,
    class_specific: bool = True,
    channel_contributions: bool = False,
    summary: str = "",
    paper: str = "",
) -> Callable[[MethodFn], MethodFn]:
    """Decorator that registers a CAM method under ``name``."""

    def decorate(fn: MethodFn) -> MethodFn:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        doc_line = (fn.__doc__ or "").strip().splitlines()
        _METHODS[name] = MethodSpec(
            name=name,
            fn=fn,
            needs_gradients=needs_gradients,
            needs_guided_gradients=needs_guided_gradients,
            class_specific=class_specific,
            channel_contributions=channel_contributions,
            summary=summary or (doc_line[0] if doc_line else ""),
            paper=paper,
        )
        return fn

    return decorate


def registered_names() -> list[str]:
    """Names registered so far, in registration order (built-ins: see :mod:`camscope.methods`)."""
    return list(_METHODS)


def lookup(name: str) -> MethodSpec:
    """The method registered under ``name``; an unknown name is a :class:`UsageError` with
    suggestions."""
    key = name.strip().lower()
    if key not in _METHODS:
        raise UsageError(
            f"unknown method {name!r}; closest: {closest(key, _METHODS)}. "
            "Run `camscope methods` for the full list."
        )
    return _METHODS[key]


def registered_specs() -> list[MethodSpec]:
    """Every :class:`MethodSpec` registered so far, in registration order."""
    return list(_METHODS.values())
