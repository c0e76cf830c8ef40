"""camscope: Class Activation Maps for image classifiers.

``import camscope`` is cheap: torch is imported only when a name that needs it is first used.

>>> from camscope import load_model, explain, list_methods
>>> model, spec = load_model("efficientnet_lite0")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "explain": "camscope.engine",
    "Explanation": "camscope.engine",
    "LayerContext": "camscope.engine",
    "load_model": "camscope.models",
    "ModelSpec": "camscope.models",
    "list_methods": "camscope._registry",
    "register_method": "camscope._registry",
    "get_method": "camscope._registry",
    "list_layers": "camscope.layers",
    "CamscopeError": "camscope.errors",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from ._registry import get_method, list_methods, register_method
    from .engine import Explanation, LayerContext, explain
    from .errors import CamscopeError
    from .layers import list_layers
    from .models import ModelSpec, load_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'camscope' has no attribute {name!r}")
