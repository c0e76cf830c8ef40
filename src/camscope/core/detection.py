"""Targets for object detectors: explain a detected box, every box above a score, or a given box.

A detector returns, per image, boxes ``b_j`` (``x0, y0, x1, y1`` in input pixels), class labels
``l_j`` and scores ``s_j`` (torchvision's Faster R-CNN, RetinaNet, FCOS and SSD in eval mode: a
list of ``{"boxes", "labels", "scores"}``). The score explained for a reference box ``r`` with
label ``l`` is that of its *match*, the detection of label ``l`` that overlaps ``r`` most:

.. math::
    j^* = \\arg\\max_{j:\\, l_j = l} \\mathrm{IoU}(r, b_j), \\qquad
    y_r = \\begin{cases} s_{j^*} & \\text{(default, ``iou="none"``)} \\\\
    s_{j^*} \\cdot \\mathrm{IoU}(r, b_{j^*}) & \\text{(``iou="multiply"``)} \\\\
    s_{j^*} + \\mathrm{IoU}(r, b_{j^*}) & \\text{(``iou="add"``)} \\end{cases}

and ``y_r = 0`` when no detection of label ``l`` reaches ``iou_threshold`` (at the first call,
the one that fixes the boxes, that is :class:`~camscope.errors.NothingToExplain` instead, as is
an image without any detection above the score threshold). Each reference box is
a target of its own: a :class:`DetectionTarget` returns ``(B, K)`` scores, so one forward and one
batched backward give a map per box (:mod:`camscope.core.targets`). Both the score and the IoU
are differentiable (the box regression is part of the graph), so a gradient method explains the
class evidence and, with ``iou``, the localisation too.

This follows the detection example of pytorch-grad-cam (Gildenblat et al., its
``FasterRCNNBoxScoreTarget``), which in turn follows the Grad-CAM paper's advice to explain any
differentiable output. Deviations: pytorch-grad-cam adds the IoU to the score and sums the
boxes into one map; here each box has its own map, the plain score is the default, and
``iou="add"`` reproduces pytorch-grad-cam's score (``tests/core/test_detection.py`` checks the
agreement).

Reference boxes come from one of three places:

* ``DetectionTarget(score_threshold=0.5)``: every detection scoring at least the threshold (of
  ``class_id`` only, when given), read from the first output the target sees, which is the
  engine's forward pass; later calls (the guided pass) match those boxes;
* ``DetectionTarget(boxes=[...])``: boxes the user gives or draws (input pixels). A box without
  a label takes, at the first call, the label of the best-scoring detection that overlaps it by
  ``iou_threshold``; its map is that detection's;
* ``DetectionTarget(boxes=..., labels=...)``: detections from an earlier :func:`detect`.

After the first call, :attr:`DetectionTarget.explained` holds, per image, the detection each
reference box matched (its box, label and score), in the order of the maps. In a batch, an
image with fewer boxes than another gets zero scores for the missing ones (all-zero maps, which
the engine's zero-gradient warning then names); explaining one image per call avoids that.

Any detector works through ``parse``: a callable that turns the model output into a list of
:class:`Detections` (one per image). Example:

    >>> model = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights="DEFAULT")  # doctest: +SKIP
    >>> target = DetectionTarget(score_threshold=0.5)  # doctest: +SKIP
    >>> res = explain(model, x, "gradcam", layer="auto", targets=target)  # doctest: +SKIP
    >>> res.maps["gradcam"].shape, target.explained[0].labels  # (1, K, H, W), K labels  # doctest: +SKIP

Inputs are what the detector takes: torchvision's detectors take images in [0, 1] and resize
and normalise them themselves (``GeneralizedRCNNTransform``); boxes come back in the input's
pixels. ``layer="auto"`` picks the last stage of the backbone's body for the FPN detectors
(``backbone.body.layer4`` of a ResNet-50: every box, of every FPN level, depends on it) and the
feature extractor of SSD (:mod:`camscope.core.families`). Perturbation methods (Score-CAM, ...)
score perturbed inputs by class and do not take callable targets: they are skipped with that
reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import NothingToExplain, TargetError, UsageError

IOU_MODES = ("none", "multiply", "add")


@dataclass(frozen=True)
class Detections:
    """One image's detections: ``boxes (N, 4)`` as ``x0, y0, x1, y1`` in input pixels,
    ``labels (N,)`` class ids, ``scores (N,)``."""

    boxes: Tensor
    labels: Tensor
    scores: Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def detach(self) -> Detections:
        """The same detections without their graph, on the CPU, in float32."""
        return Detections(
            self.boxes.detach().float().cpu(),
            self.labels.detach().long().cpu(),
            self.scores.detach().float().cpu(),
        )

    def take(self, index: Tensor) -> Detections:
        """The detections at ``index`` (a long tensor or a boolean mask)."""
        return Detections(self.boxes[index], self.labels[index], self.scores[index])


DetectionParser = Callable[[Any], Sequence[Detections]]


def torchvision_detections(output: Any) -> list[Detections]:
    """torchvision's eval-mode detector output (a list of ``{"boxes", "labels", "scores"}``, one
    per image; also one such mapping alone) as :class:`Detections`."""
    items = [output] if isinstance(output, Mapping) else output
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, Mapping) for i in items):
        raise TargetError(
            f"the model output is {type(output).__name__}, not a detector's list of "
            "{'boxes', 'labels', 'scores'} (one per image); pass parse=<callable> that turns "
            "the output into camscope.core.detection.Detections"
        )
    found = []
    for i, item in enumerate(items):
        missing = [k for k in ("boxes", "scores") if not isinstance(item.get(k), Tensor)]
        if missing:
            raise TargetError(
                f"detections of image {i} have keys {sorted(map(str, item))}; they need 'boxes' "
                "and 'scores' (and 'labels'); pass parse=<callable> for other outputs"
            )
        boxes, scores = item["boxes"], item["scores"]
        labels = item.get("labels")
        if not isinstance(labels, Tensor):
            labels = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
            raise TargetError(
                f"detections of image {i}: boxes {tuple(boxes.shape)} and scores "
                f"{tuple(scores.shape)}; expected (N, 4) and (N,)"
            )
        found.append(Detections(boxes, labels.long(), scores))
    return found


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """``(N, M)`` intersection over union of boxes ``a (N, 4)`` and ``b (M, 4)`` (``x0, y0, x1,
    y1``); differentiable; 0 where both boxes are empty.

    >>> box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2], [0, 0, 2, 2]]))
    tensor([[0.3333, 1.0000]])
    """
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), 0.0)


def _as_boxes(value: Any, what: str) -> Tensor:
    try:
        boxes = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TargetError(f"{what} must be boxes (x0, y0, x1, y1); got {value!r}") from err
    boxes = boxes.reshape(-1, 4) if boxes.numel() % 4 == 0 and boxes.ndim <= 2 else boxes
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise TargetError(f"{what} must be (K, 4) boxes x0, y0, x1, y1; got {tuple(boxes.shape)}")
    if not bool(torch.isfinite(boxes).all()) or bool(
        ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any()
    ):
        raise TargetError(
            f"{what}: every box needs x0 <= x1 and y0 <= y1 (input pixels); got {boxes.tolist()}"
        )
    return boxes


def _depth(value: Any) -> int:
    """Nesting depth of a tensor or (nested) list: 0 for a number."""
    if isinstance(value, Tensor):
        return value.ndim
    if isinstance(value, (list, tuple)):
        return 1 + (_depth(value[0]) if value else 0)
    return 0


class DetectionTarget:
    """Callable target: one score per reference box and image, ``(B, K)`` (see the module
    docstring).

    Args:
        boxes: reference boxes in input pixels: ``(K, 4)`` for every image, or a list of ``B``
            such per image; None picks every detection scoring ``score_threshold`` or more.
        labels: the class of each reference box (same layout as ``boxes``), or None to take the
            label of the best-scoring detection that overlaps each box.
        score_threshold: with ``boxes=None``, the least score of a detection to explain.
        class_id: with ``boxes=None``, explain only detections of this class.
        iou_threshold: the least IoU of a match.
        iou: ``"none"`` (the score), ``"multiply"`` (score times IoU) or ``"add"`` (score plus
            IoU, pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``).
        parse: turns the model output into a list of :class:`Detections` (default:
            :func:`torchvision_detections`).
    """

    def __init__(
        self,
        boxes: Any = None,
        labels: Any = None,
        *,
        score_threshold: float = 0.5,
        class_id: int | None = None,
        iou_threshold: float = 0.5,
        iou: str = "none",
        parse: DetectionParser | None = None,
    ) -> None:
        if iou not in IOU_MODES:
            raise UsageError(f"iou must be one of {list(IOU_MODES)}, got {iou!r}")
        if not 0.0 <= float(iou_threshold) <= 1.0:
            raise UsageError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if boxes is None and labels is not None:
            raise UsageError("labels need boxes: pass boxes=... with labels=...")
        self.score_threshold = float(score_threshold)
        self.class_id = class_id
        self.iou_threshold = float(iou_threshold)
        self.iou = iou
        self.parse: DetectionParser = parse or torchvision_detections
        self._given = boxes
        self._given_labels = labels
        self.reference: list[Detections] | None = None  # per image: the boxes explained
        self.explained: list[Detections] | None = None  # per image: their first matches

    def __call__(self, output: Any) -> Tensor:
        detections = list(self.parse(output))
        if not detections:
            raise TargetError("the detector returned no images")
        if self.reference is None:
            self.reference = self._references(detections)
            if not any(len(r) for r in self.reference):
                raise NothingToExplain(self._nothing_to_explain(detections))
        if len(detections) != len(self.reference):
            raise TargetError(
                f"the target was set up for {len(self.reference)} image(s); the detector "
                f"returned {len(detections)}"
            )
        rows, matches = [], []
        k = max(len(r) for r in self.reference)
        for i, (ref, found) in enumerate(zip(self.reference, detections)):
            score, match, ok = self._match(ref, found)
            if self.explained is None and not bool(ok.all()):
                box = ref.boxes[int((~ok).nonzero()[0, 0])]
                raise NothingToExplain(
                    f"image {i}: no detection of the box's class overlaps box "
                    f"{[round(v, 1) for v in box.tolist()]} with IoU >= {self.iou_threshold:g}; "
                    "draw the box around a detected object, or give no label"
                )
            matches.append(match)
            rows.append(torch.cat([score, score.new_zeros(k - score.shape[0])]))
        if self.explained is None:
            self.explained = [m.detach() for m in matches]
        return torch.stack(rows)

    # -- the reference boxes -----------------------------------------------------------------

    def _references(self, detections: list[Detections]) -> list[Detections]:
        if self._given is None:
            chosen = []
            for found in detections:
                keep = found.scores.detach() >= self.score_threshold
                if self.class_id is not None:
                    keep &= found.labels == int(self.class_id)
                chosen.append(found.take(keep).detach())
            return chosen
        per_image = self._per_image(self._given, len(detections), "boxes")
        labels = (
            self._per_image(self._given_labels, len(detections), "labels", boxes=False)
            if self._given_labels is not None
            else [None] * len(detections)
        )
        out = []
        for i, (boxes, found) in enumerate(zip(per_image, detections)):
            given = labels[i]
            if given is None:
                given = self._labels_of(boxes, found, i)
            elif given.shape[0] != boxes.shape[0]:
                raise TargetError(
                    f"image {i}: {given.shape[0]} labels for {boxes.shape[0]} boxes; give one "
                    "label per box"
                )
            out.append(Detections(boxes, given.long(), torch.ones(boxes.shape[0])))
        return out

    @staticmethod
    def _per_image(value: Any, batch: int, what: str, boxes: bool = True) -> list[Tensor]:
        """One tensor per image: a list of per-image entries (``(K, 4)`` boxes or ``(K,)``
        labels each), else the same entry for every image."""

        def convert(v: Any) -> Tensor:
            if boxes:
                return _as_boxes(v, what)
            return torch.as_tensor(v, dtype=torch.long).reshape(-1)

        depth = 2 if boxes else 1
        if isinstance(value, (list, tuple)) and value and all(_depth(v) == depth for v in value):
            if len(value) != batch:
                raise TargetError(f"{what}: {len(value)} entries for a batch of {batch} images")
            return [convert(v) for v in value]
        return [convert(value)] * batch

    def _labels_of(self, boxes: Tensor, found: Detections, image: int) -> Tensor:
        """Each given box's label: that of the best-scoring detection overlapping it enough."""
        det = found.detach()
        ious = box_iou(boxes, det.boxes)
        labels = []
        for k in range(boxes.shape[0]):
            near = ious[k] >= self.iou_threshold
            if self.class_id is not None:
                near &= det.labels == int(self.class_id)
            if not bool(near.any()):
                best = float(ious[k].max()) if ious.shape[1] else 0.0
                raise NothingToExplain(
                    f"image {image}: no detection overlaps box {[round(v, 1) for v in boxes[k].tolist()]} "
                    f"(in the model input's pixels) with IoU >= {self.iou_threshold:g} (the best "
                    f"overlaps {best:.2f}, of "
                    f"{len(det)} detections); draw the box around a detected object or lower "
                    "the IoU threshold"
                )
            scores = torch.where(near, det.scores, torch.full_like(det.scores, -1.0))
            labels.append(int(det.labels[int(scores.max(0).indices)]))
        return torch.tensor(labels, dtype=torch.long)

    def _nothing_to_explain(self, detections: list[Detections]) -> str:
        if self._given is not None:
            return "no reference box was given"
        best = max((float(d.scores.detach().max()) for d in detections if len(d)), default=None)
        which = f" of class {self.class_id}" if self.class_id is not None else ""
        highest = f"the highest score is {best:.3f}" if best is not None else "it found nothing"
        return (
            f"no detection{which} scores {self.score_threshold:g} or more ({highest}); lower the "
            "box threshold or give a box"
        )

    # -- matching ----------------------------------------------------------------------------

    def _match(self, ref: Detections, found: Detections) -> tuple[Tensor, Detections, Tensor]:
        """The score of each reference box's match (0 without one), the matches, and whether
        each box has one."""
        scores = found.scores
        if len(ref) == 0:
            empty = scores.new_zeros(0)
            return empty, Detections(ref.boxes, ref.labels, empty), empty.bool()
        if len(found) == 0:
            zeros = scores.new_zeros(len(ref)) + scores.sum() * 0  # still of the graph
            return zeros, Detections(ref.boxes, ref.labels, zeros), zeros.bool()
        boxes = ref.boxes.to(found.boxes)
        labels = ref.labels.to(found.labels.device)
        ious = box_iou(boxes, found.boxes)  # (K, N), differentiable through the detections
        same = labels[:, None] == found.labels[None, :]
        masked = torch.where(same, ious.detach(), torch.full_like(ious, -1.0))
        best, index = masked.max(dim=1)
        ok = best >= self.iou_threshold
        matched_iou = ious.gather(1, index[:, None])[:, 0]
        score = scores[index]
        if self.iou == "multiply":
            score = score * matched_iou
        elif self.iou == "add":
            score = score + matched_iou
        score = torch.where(ok, score, score * 0)
        match = Detections(
            torch.where(ok[:, None], found.boxes[index], boxes),
            labels,
            torch.where(ok, scores[index], scores[index] * 0),
        )
        return score, match, ok


def detect(
    model: nn.Module,
    x: Tensor,
    *,
    parse: DetectionParser | None = None,
    mode: str = "eval",
) -> list[Detections]:
    """The detector's detections for ``x`` from one no-grad forward (eval mode by default, the
    model's modes restored afterwards, its lock held), detached, on the CPU."""
    from .layers import no_grad_forward

    output = no_grad_forward(model, x, mode)
    return [d.detach() for d in (parse or torchvision_detections)(output)]
