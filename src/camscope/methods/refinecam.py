"""RefineCAM.

"How to Evaluate and Refine your CAM", arXiv:2605.14641 (2026), as implemented in
pytorch-grad-cam (``RefineCAM``) and torchcam (``RefineCAM``). A base method (Grad-CAM++ by
default) is computed at several layers, from deep to shallow; each map is normalised to [0, 1]
and brought to one resolution, and the maps are multiplied element by element:

.. math::
    L^c = \\mathrm{minmax}\\Big(\\prod_{l} \\mathrm{minmax}\\big(\\mathrm{Up}(L^c_l)\\big)\\Big)

The deep layer's coarse map says where the object is; each shallower layer's sharper (and
noisier) map refines its outline, and the product keeps only positions every layer supports,
which removes the scattered responses of the early layers.

In camscope the layers are those of the call (``layer=["layer2", "layer3", "layer4"]``): the
engine computes the base method at each of them from its one forward and backward, and RefineCAM
differs from the base method only in how the layers are fused (``fusion="product"`` in the
registry instead of the mean), so ``explain(..., layer=[...])`` returns the refined map in
``maps`` and each layer's base map in ``layer_maps``. At a single layer the map is the base
method's (and a warning says so).

Options: ``base_method`` (a registered method computed from the shared passes, default
``"gradcam++"``). Example:

    >>> explain(model, x, "refinecam", layer=["layer2", "layer3", "layer4"])  # doctest: +SKIP

Deviations: the maps are multiplied at the input resolution, each upsampled (bilinear) and
normalised first, as pytorch-grad-cam does (torchcam multiplies at the finest layer's resolution
and leaves the resize to the caller); ``eigen_smooth`` does not reach the base method.
"""

from __future__ import annotations

from torch import Tensor

from ..core.assemble import layer_map
from ..core.context import LayerContext
from ..core.registry import PassQuery, register_method
from ..errors import UsageError
from ._common import base_method

DEFAULT_BASE = "gradcam++"


def _passes(q: PassQuery) -> int:
    try:
        return base_method(q.options, DEFAULT_BASE, "refinecam").passes_per_image(q)
    except UsageError:
        return 0


@register_method(
    "refinecam",
    paper="arXiv:2605.14641, 2026",
    family="multi-layer",
    summary="a base method (Grad-CAM++) at several layers, multiplied from deep to shallow",
    passes=_passes,
    passes_text="those of its base method at each layer (gradcam++: 0)",
    fusion="product",
)
def refinecam(ctx: LayerContext) -> Tensor:
    """The base method's map at this layer; the engine multiplies the layers' maps."""
    spec = base_method(ctx.method_options, DEFAULT_BASE, "refinecam")
    return layer_map(spec, ctx)
