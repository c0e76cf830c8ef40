"""What a metric family reads: one batch, explained (:class:`BatchContext`).

:func:`camscope.evaluation.scoring.evaluate_batch` builds it once per batch and layer from one
:func:`camscope.explain` call and hands it to every selected family of
:mod:`camscope.evaluation.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from ..data.dataset import Sample

if TYPE_CHECKING:
    from ..core.prediction import Prediction
    from .config import EvalConfig
    from .registry import Scores

#: ``(inputs (n, C, H, W), classes (n,)) -> ({method: (n, H, W) maps}, (n,) top-1 classes)``:
#: the batch's methods explained again on other inputs (as :data:`camscope.metrics.robustness.ExplainFn`).
ExplainFn = Callable[[Tensor, Tensor], tuple[dict[str, Tensor], Tensor]]


class Boxes(NamedTuple):
    """Ground-truth boxes of a batch at the model's input size, padded to ``M`` per image."""

    boxes: Tensor  # (B, M, 4) input pixels, clipped to the input
    classes: Tensor  # (B, M, S) accepted model classes, -1 padded
    valid: Tensor  # (B, M)


@dataclass
class BatchContext:
    """One batch of images, explained at one layer, as every metric family reads it.

    Attributes:
        samples / scales: the images' records and their ``(sx, sy)`` image-to-input factors.
        x: ``(B, C, H, W)`` model inputs.
        methods: the methods, in the run's order.
        config: the run's settings.
        prediction: the model's :class:`~camscope.core.prediction.Prediction` on ``x``.
        top_classes: ``(B, K)`` the model's top classes (``K = min(5, classes)``), on the CPU.
        targets: ``(B,)`` the explained class of each image (its first object's accepted class
            the model finds most probable).
        maps: method -> ``(B, H, W)`` maps of the explained class.
        top_maps / top_raw: method -> ``(B, K, H, W)`` maps of the top classes, and their raw
            maps (before ReLU and normalisation, for the reject option of top-5 pointing).
        second_maps: method -> ``(B, H, W)`` maps of the second object's class (the explained
            class again for one-object images).
        forward: class scores ``(N, classes)`` of model inputs; every pass is counted and timed.
        explain: explains other inputs with every method (:data:`ExplainFn`).
        mean / std: the model's input normalisation (:class:`camscope.models.ModelSpec`), for the
            black substrate and noise on the pixel scale.
        layer: the explained layer's name (several joined by commas).
    """

    samples: Sequence[Sample]
    scales: Sequence[tuple[float, float]]
    x: Tensor
    methods: list[str]
    config: EvalConfig
    prediction: Prediction
    top_classes: Tensor
    targets: Tensor
    maps: dict[str, Tensor]
    top_maps: dict[str, Tensor]
    top_raw: dict[str, Tensor]
    second_maps: dict[str, Tensor]
    forward: Callable[[Tensor], Tensor]
    explain: ExplainFn
    mean: Sequence[float]
    std: Sequence[float]
    layer: str = ""
    _boxes: dict[int | None, Boxes] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the model input."""
        return int(self.x.shape[-2]), int(self.x.shape[-1])

    def boxes(self, which: int | None = None) -> Boxes:
        """Every object's boxes (``None``), or object ``which``'s only (0: the explained one),
        scaled by ``(sx, sy)`` to input pixels and clipped to the input (annotations without an
        image size may reach outside); computed once per batch."""
        if which in self._boxes:
            return self._boxes[which]
        samples, (height, width) = self.samples, self.size
        m = max(1, max(len(s.objects) for s in samples))
        s_max = max([1] + [len(o.class_ids) for s in samples for o in s.objects])
        boxes = torch.zeros(len(samples), m, 4)
        classes = torch.full((len(samples), m, s_max), -1, dtype=torch.long)
        valid = torch.zeros(len(samples), m, dtype=torch.bool)
        for i, (s, (sx, sy)) in enumerate(zip(samples, self.scales)):
            for j, o in enumerate(s.objects):
                if which is not None and j != which:
                    continue
                x0, y0, x1, y1 = o.box
                boxes[i, j] = torch.tensor([x0 * sx, y0 * sy, x1 * sx, y1 * sy])
                boxes[i, j, 0::2] = boxes[i, j, 0::2].clamp(0, width)
                boxes[i, j, 1::2] = boxes[i, j, 1::2].clamp(0, height)
                classes[i, j, : len(o.class_ids)] = torch.tensor(o.class_ids, dtype=torch.long)
                valid[i, j] = True
        device = self.x.device
        self._boxes[which] = Boxes(boxes.to(device), classes.to(device), valid.to(device))
        return self._boxes[which]

    def two_objects(self) -> list[int]:
        """Indices of the images with a second object that has model classes."""
        return [
            i for i, s in enumerate(self.samples) if len(s.objects) >= 2 and s.objects[1].class_ids
        ]

    @property
    def black(self) -> Tensor:
        """``(1, C, 1, 1)`` the model-input value of a black pixel: ``(0 - mean) / std``."""
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        return ((0.0 - mean) / std).view(1, -1, 1, 1).to(self.x.device)

    def p_full(self) -> Tensor:
        """``(B,)`` the probability of the explained class on the image (``Y``)."""
        probs = self.prediction.probabilities
        return probs.gather(1, self.targets[:, None].to(probs.device))[:, 0]

    def empty(self) -> Scores:
        """Per method, one empty dict per image: what a family fills."""
        return {m: [{} for _ in self.samples] for m in self.methods}
