"""Built-in CAM methods, one file each; importing this package registers each of them.

A method file imports :mod:`camscope.core.context` (what it reads), :mod:`camscope.core.registry`
(``@register_method``), :mod:`camscope.core.ops` and, for the perturbation family,
:mod:`camscope.perturbation`; never the engine. Registration follows import order (alphabetical
here); it is the order of ``list_methods()``, the CLI and the docs table. The lookups below read
the registry after every built-in method is in it.
"""

from . import (
    ablationcam,
    cam,
    counterfactual,
    eigencam,
    eigengradcam,
    faster_scorecam,
    gradcam,
    gradcampp,
    guided_backprop,
    guided_gradcam,
    hirescam,
    iscam,
    layercam,
    scorecam,
    smoothgradcampp,
    sscam,
    xgradcam,
)

from ..core.registry import MethodSpec, lookup, registered_names, registered_specs


def list_methods() -> list[str]:
    """Names of every registered method, in registration order."""
    return registered_names()


def get_method(name: str) -> MethodSpec:
    """Look a method up by name; an unknown name is a :class:`~camscope.errors.UsageError` with
    suggestions."""
    return lookup(name)


def method_specs() -> list[MethodSpec]:
    """Every registered :class:`~camscope.core.registry.MethodSpec`, in registration order."""
    return registered_specs()
