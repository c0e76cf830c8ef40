"""Built-in CAM methods, one file each; importing this package registers each of them.

A method file imports :mod:`camscope.core.context` (what it reads), :mod:`camscope.core.registry`
(``@register_method``), :mod:`camscope.core.ops` and, for the perturbation family,
:mod:`camscope.perturbation`; never the engine. Registration follows import order (alphabetical
here); it is the order of ``list_methods()``, the CLI and the docs table. The lookups below read
the registry after every built-in method is in it; :mod:`.selection` turns what a user asked for
(names or ``all``) into the methods a run uses, under the pass budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import (
    ablationcam,
    attention_rollout,
    cam,
    counterfactual,
    dff,
    eigencam,
    eigengradcam,
    faster_scorecam,
    fem,
    finercam,
    fullgrad,
    gradcam,
    gradcam_elementwise,
    gradcampp,
    guided_backprop,
    guided_gradcam,
    hirescam,
    iscam,
    kpcacam,
    layercam,
    legrad,
    occlusion,
    randomcam,
    reciprocam,
    refinecam,
    scorecam,
    seg_eigencam,
    sess,
    shapleycam,
    smoothgradcampp,
    sobelcam,
    sscam,
    transformer_attribution,
    vit_reciprocam,
    xgradcam,
)
from ..core.registry import MethodSpec, lookup, registered_names, registered_specs
from .selection import (
    MethodChoice,
    choose_methods,
    estimate_passes,
    parse_methods,
    unsuited_methods,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ..core.layers import LayerSpec, ReshapeFn


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
