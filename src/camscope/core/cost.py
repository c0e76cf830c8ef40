"""How many model passes a call will cost, before running it.

Every registered method declares the passes per image it adds beyond the shared forward and
backward (:class:`~camscope.core.registry.MethodSpec` ``passes``): none for the gradient methods,
one guided forward and backward for the guided ones, about one forward per channel for Score-CAM,
``N`` per channel for SS-CAM and IS-CAM. :func:`layer_channels` finds the channel counts with one
dry forward, :func:`estimate` adds the costs up per method (over every explained layer; the
guided pass is shared), and :func:`within_budget` splits a method list by a budget of passes per
image (``DEFAULT_PASS_BUDGET``), which is what ``camscope explain -m all`` uses.

The counts are upper bounds for the Score-CAM family: constant and duplicate masks share one
pass, so real runs often need fewer.

Example:
    >>> from camscope.methods import estimate_passes
    >>> estimate_passes(model, x, ["gradcam", "scorecam", "sscam"], "bn2")  # doctest: +SKIP
    {'gradcam': 0, 'scorecam': 1281, 'sscam': 44801}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from .layers import ReshapeFn, hooked_dry_forward, to_spatial
from .registry import MethodSpec, PassQuery
from .reshape import spatial_reshape

#: Passes per image above which ``-m all`` leaves a method out (unless ``--allow-slow``).
DEFAULT_PASS_BUDGET = 2000


def layer_channels(
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module]],
    x: Tensor,
    reshape: ReshapeFn | None = None,
) -> dict[str, int]:
    """Channels of each layer's output as the methods see it (tokens reshaped), from one
    eval-mode, no-grad forward on ``x[:1]`` (modes and hooks restored)."""
    return {name: c for name, (c, _) in layer_shapes(model, layers, x, reshape).items()}


def layer_shapes(
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module]],
    x: Tensor,
    reshape: ReshapeFn | None = None,
) -> dict[str, tuple[int, int]]:
    """``(channels, positions h * w)`` of each layer's output as the methods see it (tokens
    reshaped; positions 0 where the output is no feature map), from one eval-mode, no-grad
    forward on ``x[:1]`` (modes and hooks restored)."""
    shapes: dict[str, tuple[int, int]] = {}
    size = (x.shape[-2], x.shape[-1])

    def record(name: str) -> Any:
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            if isinstance(out, Tensor) and name not in shapes:
                try:
                    fn = reshape or spatial_reshape(model, name, size)
                    spatial = to_spatial(fn(out), name)
                    shapes[name] = (int(spatial.shape[1]), int(spatial[0, 0].numel()))
                except Exception:  # not a feature map: the run itself will say why
                    shapes[name] = (int(out.shape[1]) if out.ndim > 1 else 1, 0)

        return hook

    hooked_dry_forward(model, x, [(m, record(n)) for n, m in layers])
    return shapes


def estimate(
    specs: Sequence[MethodSpec],
    channels: Mapping[str, int],
    targets: int = 1,
    options: Mapping[str, Any] | None = None,
    input_size: tuple[int, int] = (224, 224),
    positions: Mapping[str, int] | None = None,
    aug_smooth: bool = False,
) -> dict[str, int]:
    """Passes per image each method adds, summed over the layers in ``channels`` (the guided
    pass, which does not depend on the layer, counted once), for inputs of ``input_size``;
    ``positions`` holds each layer's ``h * w`` where known (:func:`layer_shapes`).

    With ``aug_smooth`` the call explains every augmented copy of the input
    (:data:`camscope.core.smoothing.AUGMENTATIONS`, four in all): each method's own passes count
    once per copy, and each extra copy's forward (and backward, for gradient methods) is added to
    every method that needs it, an upper bound when several methods share one call."""
    from .smoothing import AUGMENTATIONS

    copies = len(AUGMENTATIONS) if aug_smooth else 1
    opts = dict(options or {})
    where = dict(positions or {})
    result = {}
    for spec in specs:
        per_layer = [
            spec.passes_per_image(PassQuery(c, targets, opts, input_size, where.get(name, 0)))
            for name, c in channels.items()
        ] or [spec.passes_per_image(PassQuery(0, targets, opts, input_size))]
        own = max(per_layer) if spec.needs_guided_gradients else sum(per_layer)
        result[spec.name] = copies * own + (copies - 1) * shared_passes([spec])
    return result


def shared_passes(specs: Sequence[MethodSpec]) -> int:
    """The passes every call makes: one forward, one backward if a method needs gradients, and
    one guided forward and backward if a guided method is asked for (counted in its estimate)."""
    return 1 + int(any(s.needs_gradients for s in specs))


def within_budget(
    estimates: Mapping[str, int], budget: int = DEFAULT_PASS_BUDGET
) -> tuple[list[str], dict[str, str]]:
    """Split methods into those whose estimate fits ``budget`` passes per image and the others
    (name -> why it was left out)."""
    kept = [name for name, n in estimates.items() if n <= budget]
    left = {
        name: f"about {n:,} model passes per image, over the budget of {budget:,}"
        for name, n in estimates.items()
        if n > budget
    }
    return kept, left
