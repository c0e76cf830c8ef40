"""Targets for semantic segmentation models: explain a class inside a pixel region.

A segmentation model gives per-pixel class scores ``(B, K, H, W)``. Following Vinogradova et al.
("Towards Interpretable Semantic Segmentation via Gradient-weighted Class Activation Mapping",
AAAI 2020 student abstract), the score explained is the sum of the class's logits over a pixel
mask ``M``:

.. math::
    y^c = \\sum_{(u, v) \\in M} Y^c_{uv}

so any gradient CAM method answers "which features made the model label *these* pixels as ``c``".

Example:
    >>> model = torchvision.models.segmentation.fcn_resnet50(weights=None)  # doctest: +SKIP
    >>> target = SegmentationTarget(class_id=15, mask=person_mask)  # doctest: +SKIP
    >>> res = explain(model, x, "gradcam", layer="auto", targets=target)  # doctest: +SKIP

``layer="auto"`` picks the backbone's last stage for torchvision FCN / DeepLabV3 / LR-ASPP.
Deviation from the paper: when no mask is given, the mask is the set of pixels the model itself
labels ``c`` (its arg-max), computed without gradients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import NothingToExplain, TargetError


class SegmentationTarget:
    """Callable target: the sum of class ``class_id``'s logits over a pixel mask, per image.

    Args:
        class_id: the class channel to explain.
        mask: ``(H, W)`` or ``(B, H, W)`` boolean/0-1 tensor at the output's resolution, or None
            for the model's own prediction of ``class_id``.
        output_key: for models that return a mapping (torchvision's ``{"out": ..., "aux": ...}``),
            the entry holding the logits; Hugging Face outputs use their ``logits`` attribute.
        resize: a mask at another resolution than the output is resized to it (nearest
            neighbour) instead of refused (a region painted on the input, for a model whose
            logits are coarser).
    """

    def __init__(
        self,
        class_id: int,
        mask: Tensor | None = None,
        output_key: str = "out",
        *,
        resize: bool = False,
    ) -> None:
        if isinstance(class_id, bool) or not isinstance(class_id, int) or class_id < 0:
            raise TargetError(f"class_id must be a non-negative int, got {class_id!r}")
        if mask is not None and (not isinstance(mask, Tensor) or mask.ndim not in (2, 3)):
            raise TargetError(
                "mask must be a (H, W) or (B, H, W) tensor of 0/1 values at the model output's "
                f"resolution; got {type(mask).__name__} {tuple(getattr(mask, 'shape', ()))}"
            )
        self.class_id = class_id
        self.mask = mask
        self.output_key = output_key
        self.resize = resize

    def logits(self, output: Any) -> Tensor:
        """The ``(B, K, H, W)`` logits inside a model output."""
        if isinstance(output, Mapping):
            if self.output_key not in output:
                raise TargetError(
                    f"the model output has keys {sorted(map(str, output))}, not {self.output_key!r}; "
                    "pass SegmentationTarget(..., output_key='<key>')"
                )
            output = output[self.output_key]
        elif not isinstance(output, Tensor) and isinstance(getattr(output, "logits", None), Tensor):
            output = output.logits
        if not isinstance(output, Tensor) or output.ndim != 4:
            raise TargetError(
                "SegmentationTarget needs (batch, classes, height, width) logits; got "
                f"{type(output).__name__} {tuple(getattr(output, 'shape', ()))}"
            )
        if not 0 <= self.class_id < output.shape[1]:
            raise TargetError(
                f"class {self.class_id} is out of range: the model has classes "
                f"0..{output.shape[1] - 1}"
            )
        return output

    def __call__(self, output: Any) -> Tensor:
        logits = self.logits(output)
        scores = logits[:, self.class_id]  # (B, H, W)
        if self.mask is None:
            with torch.no_grad():
                mask = (logits.argmax(dim=1) == self.class_id).to(scores.dtype)
            if bool((mask.flatten(1).sum(1) == 0).any()):
                raise NothingToExplain(
                    f"the model labels no pixel of at least one image as class {self.class_id}; "
                    "pass mask=<(H, W) tensor> (on the command line: --region MASK.png) to say "
                    "which pixels to explain"
                )
        else:
            mask = self.mask.to(device=scores.device, dtype=scores.dtype)
            if mask.shape[-2:] != scores.shape[-2:] and self.resize:
                lead = mask if mask.ndim == 3 else mask[None]
                mask = torch.nn.functional.interpolate(
                    lead[:, None], size=tuple(scores.shape[-2:]), mode="nearest"
                )[:, 0]
                mask = mask if self.mask.ndim == 3 else mask[0]
            if mask.shape[-2:] != scores.shape[-2:]:
                raise TargetError(
                    f"mask is {tuple(mask.shape[-2:])} but the model output is "
                    f"{tuple(scores.shape[-2:])}; give the mask at the output's resolution"
                )
        return (scores * mask).sum(dim=(-2, -1))


def class_fractions(model: nn.Module, x: Tensor, output_key: str = "out") -> Tensor:
    """``(B, K)``: the fraction of each image's pixels the model labels with each class (its
    per-pixel arg-max), from one no-grad forward in eval mode (the model's modes restored
    afterwards, its lock held); what a viewer offers to explain."""
    from .concurrency import model_lock
    from .layers import preserved_modes

    with model_lock(model), preserved_modes(model), torch.no_grad():
        model.eval()
        logits = SegmentationTarget(0, output_key=output_key).logits(model(x))
        labels = logits.argmax(dim=1).flatten(1)  # (B, H * W)
    counts = torch.zeros(logits.shape[0], logits.shape[1], device=labels.device)
    counts.scatter_add_(1, labels, torch.ones_like(labels, dtype=counts.dtype))
    return (counts / labels.shape[1]).cpu()
