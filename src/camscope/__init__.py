"""camscope: Class Activation Maps for image classifiers.

``import camscope`` is cheap: torch is imported only when a name that needs it is first used.

>>> from camscope import load_model, explain, list_methods
>>> model, spec = load_model("efficientnet_lite0")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "explain": "camscope.core.engine",
    "Explanation": "camscope.core.result",
    "LayerContext": "camscope.core.context",
    "load_model": "camscope.models",
    "ModelSpec": "camscope.models",
    "list_methods": "camscope.methods",
    "register_method": "camscope.core.registry",
    "get_method": "camscope.methods",
    "list_layers": "camscope.core.layers",
    "CamscopeError": "camscope.errors",
    "DetectionTarget": "camscope.core.detection",
    "SegmentationTarget": "camscope.core.segmentation",
    "SimilarityTarget": "camscope.core.similarity",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from .core.context import LayerContext
    from .core.detection import DetectionTarget
    from .core.engine import explain
    from .core.layers import list_layers
    from .core.registry import register_method
    from .core.result import Explanation
    from .core.segmentation import SegmentationTarget
    from .core.similarity import SimilarityTarget
    from .errors import CamscopeError
    from .methods import get_method, list_methods
    from .models import ModelSpec, load_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'camscope' has no attribute {name!r}")
