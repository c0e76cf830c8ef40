"""Test-time augmentation smoothing (``explain(..., aug_smooth=True)``).

The maps of every method are computed on four versions of the input and averaged after each map
is mapped back onto the original image:

1. the input itself;
2. the input flipped left-right (its maps are flipped back);
3. the input resized by a factor 1.125 (bilinear; maps resized back to the input size);
4. the input resized by a factor 0.875 (bilinear with antialiasing; maps resized back).

The average of the four normalised maps is normalised again to [0, 1]. The explained classes are
the ones chosen on the unaugmented input (so a flip cannot change a top-k choice); callable
targets are applied to each augmented output. Everything except ``maps`` and ``layer_maps``
(``raw``, ``layer_raw``, scores, logits) comes from the unaugmented pass: raw maps at layer
resolution are not comparable across scales. The scaled passes need a model that accepts other
input sizes (CNNs do; ViTs with fixed position embeddings do not).

This follows the idea of test-time augmentation smoothing in pytorch-grad-cam (which uses a flip
and brightness multipliers instead of scales).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import fuse_layers, normalise
from .registry import lookup

if TYPE_CHECKING:
    from .result import Explanation


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """A flip and/or a rescale of the input, and its inverse for maps."""

    name: str
    flip: bool = False
    scale: float = 1.0

    def apply(self, x: Tensor) -> Tensor:
        if self.scale != 1.0:
            size = (round(x.shape[-2] * self.scale), round(x.shape[-1] * self.scale))
            x = F.interpolate(
                x, size=size, mode="bilinear", align_corners=False, antialias=self.scale < 1
            )
        return x.flip(-1) if self.flip else x

    def invert(self, maps: Tensor, size: tuple[int, int]) -> Tensor:
        """Maps ``(..., h, w)`` of the augmented input -> ``(..., H, W)`` on the original."""
        if self.flip:
            maps = maps.flip(-1)
        if tuple(maps.shape[-2:]) != size:
            lead = maps.shape[:-2]
            flat = maps.reshape(-1, 1, *maps.shape[-2:])
            maps = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
            maps = maps.reshape(*lead, *size)
        return maps


AUGMENTATIONS: tuple[Augmentation, ...] = (
    Augmentation("identity"),
    Augmentation("hflip", flip=True),
    Augmentation("scale-1.125", scale=1.125),
    Augmentation("scale-0.875", scale=0.875),
)


def aug_smooth_explain(
    explain_fn: Callable[..., Explanation],
    model: nn.Module,
    x: Tensor,
    methods: Sequence[str],
    layer: Any,
    targets: Any,
    *,
    output_adapter: Any = None,
    reshape: Any = None,
    eigen_smooth: bool = False,
    method_options: Mapping[str, Any] | None = None,
    augmentations: Sequence[Augmentation] = AUGMENTATIONS,
    strict: bool = False,
    mode: str = "eval",
    multilabel: bool = False,
    precision: str = "fp32",
) -> Explanation:
    """Run ``explain_fn`` on each augmentation and average the maps (see the module docstring).

    Methods and layers skipped on the input itself are left out of the augmented runs; a map an
    augmented run cannot give is averaged over the others (the sum is renormalised).
    """
    common: dict[str, Any] = {
        "output_adapter": output_adapter,
        "reshape": reshape,
        "eigen_smooth": eigen_smooth,
        "method_options": method_options,
        "mode": mode,
        "multilabel": multilabel,
        "strict": strict,
        "precision": precision,
    }
    base = explain_fn(model, x, methods, layer, targets, **common)
    methods = list(base.maps)
    size = (x.shape[-2], x.shape[-1])
    layers = base.layer_names
    per_class = base.targets.ndim == 2
    callable_target = callable(targets) and not isinstance(targets, Tensor)
    sums = {lay: {m: v.clone() for m, v in d.items()} for lay, d in base.layer_maps.items()}
    for aug in augmentations:
        if aug.name == "identity":
            continue
        xa = aug.apply(x)
        if callable_target:
            runs = [explain_fn(model, xa, methods, layers, targets, **common)]
        elif per_class:
            runs = [
                explain_fn(model, xa, methods, layers, base.targets[:, j].tolist(), **common)
                for j in range(base.targets.shape[1])
            ]
        else:
            runs = [explain_fn(model, xa, methods, layers, base.targets.tolist(), **common)]
        for lay in layers:
            for m in sums[lay]:
                if any(m not in r.layer_maps.get(lay, {}) for r in runs):
                    continue
                parts = [r.layer_maps[lay][m] for r in runs]
                maps = torch.stack(parts, 1) if per_class else parts[0]
                sums[lay][m] += aug.invert(maps, size)
    layer_maps = {lay: {m: normalise(v) for m, v in d.items()} for lay, d in sums.items()}
    fused = {}
    for m in base.maps:
        stack = torch.stack([layer_maps[lay][m] for lay in layers if m in layer_maps[lay]])
        fused[m] = fuse_layers(stack, lookup(m).fusion)
    return dataclasses.replace(base, maps=fused, layer_maps=layer_maps)
