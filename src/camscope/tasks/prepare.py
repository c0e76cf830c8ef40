"""A task made ready for one model: class, region and references read once, then each image's
target and the description of what its maps explain.

Coordinates: the model sees the image resized to ``spec.input_size`` (without keeping the
aspect ratio, as for classifiers); boxes the user gives are in the image's own pixels and are
scaled to the input, and the boxes reported are scaled back to the image's pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .request import TaskRequest

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from ..core.result import Explanation
    from ..models import ModelSpec

log = logging.getLogger(__name__)

Size = tuple[int, int]  # (width, height)


@dataclass
class PreparedTask:
    """A :class:`TaskRequest` ready for one model (see :func:`prepare_task`)."""

    task: str
    request: TaskRequest
    spec: ModelSpec
    class_id: int | None = None
    region: np.ndarray | None = None  # segmentation: (H, W) bool at the model input's size
    references: torch.Tensor | None = None  # similarity: (R, D) embeddings
    reference_names: list[str] = field(default_factory=list)

    @property
    def input_size(self) -> Size:
        height, width = (int(v) for v in self.spec.input_size)
        return width, height

    def target(self, image_size: Size) -> Any:
        """A fresh target for one image of ``image_size`` (width, height): detection targets
        remember their boxes, so each call of :func:`camscope.explain` gets its own."""
        import torch

        from ..core.detection import DetectionTarget
        from ..core.segmentation import SegmentationTarget
        from ..core.similarity import SimilarityTarget

        r = self.request
        if self.task == "detection":
            boxes = None
            if r.boxes:
                boxes = torch.tensor(r.boxes, dtype=torch.float32) * _scale(
                    image_size, self.input_size
                )
            return DetectionTarget(
                boxes,
                score_threshold=r.box_threshold,
                class_id=self.class_id,
                iou_threshold=r.iou_threshold,
                iou=r.iou,
            )
        if self.task == "segmentation":
            assert self.class_id is not None
            mask = None if self.region is None else torch.from_numpy(self.region)
            return SegmentationTarget(self.class_id, mask, resize=True)
        if self.task == "similarity":
            assert self.references is not None
            refs = self.references
            return SimilarityTarget(refs[0] if refs.shape[0] == 1 else refs)
        raise UsageError(f"{self.task} needs no task target")

    def describe(
        self, target: Any, result: Explanation, index: int, image_size: Size
    ) -> list[dict[str, Any]]:
        """One entry per map of image ``index``: what it explains (class, label, score; boxes in
        the image's pixels for detection)."""
        scores = result.scores[index].reshape(-1).tolist()
        if self.task == "detection":
            explained = target.explained[index] if target.explained else None
            if explained is None:
                return []
            back = _scale(self.input_size, image_size)
            out = []
            given = target.reference[index].boxes if self.request.boxes else None
            for k in range(len(explained)):
                box = (explained.boxes[k] * back).tolist()
                entry: dict[str, Any] = {
                    "index": k,
                    "class": int(explained.labels[k]),
                    "label": self.spec.label(int(explained.labels[k])),
                    "score": round(float(explained.scores[k]), 6),
                    "box": [round(v, 2) for v in box],
                }
                if self.request.iou != "none":
                    entry["target_score"] = round(float(scores[k]), 6)
                if given is not None:
                    entry["given_box"] = [round(v, 2) for v in (given[k] * back).tolist()]
                out.append(entry)
            return out
        if self.task == "segmentation":
            assert self.class_id is not None
            pixels = None if self.region is None else int(self.region.sum())
            return [
                {
                    "class": self.class_id,
                    "label": self.spec.label(self.class_id),
                    "score": round(float(scores[0]), 6),
                    "region": "mask" if pixels is not None else "predicted pixels",
                    "region_pixels": pixels,
                }
            ]
        return [
            {
                "class": -1,
                "label": f"similarity to {name}",
                "reference": name,
                "score": round(float(score), 6),
            }
            for name, score in zip(self.reference_names, scores)
        ]

    def caption(self, entry: dict[str, Any]) -> str:
        """A short title for one entry (grid rows, the viewer)."""
        if self.task == "detection":
            return f"box {entry['index']}: {entry['label']}, score {entry['score']:.2f}"
        if self.task == "segmentation":
            where = "in the mask" if entry["region_pixels"] is not None else "where predicted"
            return f"class {entry['label']} {where}, score {entry['score']:.3g}"
        return f"{entry['label']}: cosine {entry['score']:.3f}"


def _scale(source: Size, dest: Size) -> Any:
    import torch

    sx, sy = dest[0] / source[0], dest[1] / source[1]
    return torch.tensor([sx, sy, sx, sy])


def prepare_task(
    request: TaskRequest,
    model: nn.Module,
    spec: ModelSpec,
    device: torch.device,
    *,
    max_pixels: int | None = None,
) -> PreparedTask | None:
    """The request made ready for ``model`` (None for classification, which needs none): the
    class resolved in the spec's names, the region mask read at the input size, the reference
    images embedded by the model (one no-grad pass).

    Raises:
        UsageError: options of another task, a task the model cannot do.
        TargetError: an unknown class.
        ImageLoadError: an unreadable region mask or reference image.
    """
    from ..data.classes import parse_target

    task = request.resolve(spec.task)
    if task == "classification":
        return None
    prepared = PreparedTask(task, request, spec)
    if request.class_name is not None:
        found = parse_target(request.class_name, spec.class_names, model=spec.name, what="--class")
        if not isinstance(found, int):
            raise UsageError(f"--class names one class (a name or an index); got {found!r}")
        prepared.class_id = found
    if task == "segmentation" and request.region is not None:
        from .. import io

        width, height = prepared.input_size
        prepared.region = io.load_mask(request.region, (height, width))
    if task == "similarity":
        import torch

        from ..core.similarity import embed
        from ..data.dataset import LoadOptions, Sample

        options = LoadOptions(max_pixels=max_pixels)  # decoded and preprocessed as any input
        sources = [str(source) for source in request.references]  # a library caller's Paths too
        inputs = [Sample(source, source).prepare(spec, options).x for source in sources]
        prepared.references = embed(model, torch.cat(inputs).to(device))
        prepared.reference_names = [s.replace("\\", "/").rsplit("/", 1)[-1] for s in sources]
        log.info(
            "similarity: %d reference embedding(s) of %d dimensions", *prepared.references.shape
        )
    return prepared
