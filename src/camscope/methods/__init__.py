"""Built-in CAM methods, one file each; importing this package registers each of them.

A method file imports :mod:`camscope.core.context` (what it reads), :mod:`camscope.core.registry`
(``@register_method``), :mod:`camscope.core.ops` and, for the perturbation family,
:mod:`camscope.perturbation`; never the engine. Registration follows import order (alphabetical
here); it is the order of ``list_methods()``, the CLI and the docs table. The lookups below read
the registry after every built-in method is in it.
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


def unsuited_methods(model: nn.Module, methods: Sequence[str]) -> dict[str, str]:
    """The methods among ``methods`` that cannot explain ``model`` at all, each with the reason
    (transformer-only methods on a model whose attention :mod:`camscope.core.attention` cannot
    read). ``-m all`` leaves them out instead of reporting them skipped."""
    from ..core.attention import transformer_layout
    from ..errors import UnsupportedModelError

    wanted = [lookup(name) for name in methods]
    if not any(spec.models == "transformer" for spec in wanted):
        return {}
    try:
        transformer_layout(model)
    except UnsupportedModelError as err:
        return {spec.name: str(err) for spec in wanted if spec.models == "transformer"}
    return {}


def estimate_passes(
    model: nn.Module,
    x: Tensor,
    methods: Sequence[str],
    layer: LayerSpec = "auto",
    *,
    targets: int = 1,
    method_options: Mapping[str, Any] | None = None,
    reshape: ReshapeFn | None = None,
    aug_smooth: bool = False,
) -> dict[str, int]:
    """Model passes per image each method would add beyond the shared forward and backward, for
    ``model`` at ``layer`` (one dry forward to count the layers' channels), with ``targets``
    classes per image and, with ``aug_smooth``, every augmented copy counted (see
    :mod:`camscope.core.cost`; upper bounds for the Score-CAM family)."""
    from ..core.cost import estimate, layer_shapes
    from ..core.layers import resolve_layers

    specs = [lookup(name) for name in methods]
    layers = resolve_layers(model, layer, x)
    shapes = layer_shapes(model, layers, x, reshape)
    channels = {name: c for name, (c, _) in shapes.items()}
    positions = {name: p for name, (_, p) in shapes.items()}
    size = (int(x.shape[-2]), int(x.shape[-1]))
    return estimate(
        specs,
        channels,
        targets,
        method_options,
        input_size=size,
        positions=positions,
        aug_smooth=aug_smooth,
    )
