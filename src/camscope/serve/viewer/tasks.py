"""The viewer's work for detectors, segmentation models and DFF concepts (no HTTP here).

:class:`TaskService` answers the routes ``POST /api/detect`` (the boxes a detector finds, to
draw and click), ``POST /api/explain-task`` (the maps of one box, a drawn box, a class in a
painted region, or the similarity to a reference image), ``POST /api/segment-classes`` (the
classes a segmentation model sees, to pick one) and ``POST /api/concepts`` (Deep Feature
Factorization's concepts and their top classes). It shares the :class:`~.service.Explainer`'s
decoded inputs (:meth:`~.service.Explainer.prepare`) and runs every model pass while holding the
model's lock. Boxes travel in the image's own pixels; maps at the model input's size, as
``POST /api/explain`` sends them (:mod:`.encode`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from .encode import map_entry

if TYPE_CHECKING:
    from ...tasks import TaskRequest
    from .pool import ModelSlot
    from .service import Explainer, LazyImage

#: the most concepts one request may ask for
MAX_CONCEPTS = 12


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """``"x0,y0,x1,y1"`` -> four numbers (empty text: None)."""
    if not text.strip():
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
        raise UsageError(f"box {text[:80]!r}: give x0,y0,x1,y1 with x0 < x1 and y0 < y1")
    return (values[0], values[1], values[2], values[3])


class TaskService:
    """Detection, segmentation, similarity and concepts for the viewer (module docstring)."""

    def __init__(self, explainer: Explainer) -> None:
        self.explainer = explainer
        self.pool = explainer.pool

    def detect(
        self, model: str, source: LazyImage, threshold: float, class_name: str
    ) -> dict[str, Any]:
        """The detections scoring ``threshold`` or more (of ``class_name`` when given)."""
        from ...core.detection import detect

        slot = self.pool.get(model)
        if slot.spec.task != "detection":
            raise UsageError(f"{slot.name} is a {slot.spec.task} model, not a detector")
        if not 0.0 <= threshold <= 1.0:
            raise UsageError(f"threshold must be between 0 and 1; got {threshold}")
        class_id = self._class_id(slot, class_name)
        record, _ = self.explainer.prepare(slot, source)
        with slot.lock:
            (found,) = detect(slot.model, record.x)
        keep = found.scores >= threshold
        if class_id is not None:
            keep &= found.labels == class_id
        width, height = record.size
        in_h, in_w = slot.spec.input_size
        scale = [width / in_w, height / in_h, width / in_w, height / in_h]
        boxes = [
            {
                "index": i,
                "box": [round(float(v) * s, 2) for v, s in zip(found.boxes[k].tolist(), scale)],
                "class": int(found.labels[k]),
                "label": slot.spec.label(int(found.labels[k])),
                "score": round(float(found.scores[k]), 6),
            }
            for i, k in enumerate(keep.nonzero()[:, 0].tolist())
        ]
        return {"model": slot.name, "image_size": [width, height], "boxes": boxes}

    def explain(
        self,
        model: str,
        methods: str,
        layer: str,
        request: TaskRequest,
        source: LazyImage,
        region: bytes | None = None,
        references: list[tuple[str, bytes]] | None = None,
    ) -> dict[str, Any]:
        """The maps of ``methods`` (comma-separated) for ``request``'s targets (its boxes: ``x0,
        y0, x1, y1`` in the image's pixels, none for every box above its threshold) and what
        each explains; ``region``: a segmentation mask, ``references``: (name, bytes) images."""
        import torch

        from ... import io
        from ...core.engine import explain
        from ...core.similarity import embed
        from ...tasks import PreparedTask, prepare_task
        from .service import parse_methods

        began = time.perf_counter()
        slot = self.pool.get(model)
        names = parse_methods(methods)
        request = replace(request, references=tuple(name for name, _ in references or ()))
        resolved = request.resolve(slot.spec.task)
        if region is not None and resolved != "segmentation":
            raise UsageError(f"a region is for segmentation models; {slot.name} does {resolved}")
        if resolved == "classification":
            raise UsageError(f"{slot.name} is a classifier: use POST /api/explain")
        record, _ = self.explainer.prepare(slot, source)
        layers = slot.resolve_layers(layer)
        with slot.lock:
            if resolved == "similarity":  # the references come as uploads, not paths
                images = [io.load_image_bytes(data, name) for name, data in references or ()]
                x_ref = torch.cat([io.preprocess(i, slot.spec) for i in images]).to(slot.device)
                task = PreparedTask(
                    "similarity",
                    request,
                    slot.spec,
                    references=embed(slot.model, x_ref),
                    reference_names=list(request.references),
                )
            else:
                prepared = prepare_task(request, slot.model, slot.spec, slot.device)
                assert prepared is not None
                task = prepared
            if region is not None:
                height, width = slot.spec.input_size
                task.region = io.load_mask(region, (int(height), int(width)), name="region")
            target = task.target(record.size)
            result = explain(
                slot.model,
                record.x,
                list(names),
                layers[0] if len(layers) == 1 else list(layers),
                target,
                strict=True,
            )
        entries = task.describe(target, result, 0, record.size)
        return {
            "model": slot.name,
            "task": resolved,
            "layer": ",".join(layers),
            "image_size": list(record.size),
            "targets": entries,
            "captions": [task.caption(e) for e in entries],
            "maps": {m: map_entry(result.maps[m][0]) for m in names},
            "seconds": {"total": round(time.perf_counter() - began, 4)},
        }

    def segment_classes(self, model: str, source: LazyImage) -> dict[str, Any]:
        """The classes the segmentation model labels pixels with, most pixels first."""
        from ...core.segmentation import class_fractions

        slot = self.pool.get(model)
        if slot.spec.task != "segmentation":
            raise UsageError(f"{slot.name} is a {slot.spec.task} model, not a segmentation model")
        record, _ = self.explainer.prepare(slot, source)
        with slot.lock:
            fractions = class_fractions(slot.model, record.x)[0]
        order = sorted(range(fractions.shape[0]), key=lambda c: -float(fractions[c]))
        return {
            "model": slot.name,
            "classes": [
                {"index": c, "label": slot.spec.label(c), "fraction": round(float(fractions[c]), 6)}
                for c in order
                if float(fractions[c]) > 0
            ],
        }

    def concepts(self, model: str, source: LazyImage, layer: str, count: int) -> dict[str, Any]:
        """DFF's ``count`` concepts of the layer, each with its map and top classes."""
        from ...methods.dff import concepts

        if not 1 <= count <= MAX_CONCEPTS:
            raise UsageError(f"num_concepts must be 1..{MAX_CONCEPTS}; got {count}")
        slot = self.pool.get(model)
        if slot.spec.task != "classification":
            raise UsageError("DFF concepts are named by classes: they are for classifiers")
        record, _ = self.explainer.prepare(slot, source)
        layers = slot.resolve_layers(layer)
        with slot.lock:
            (found,) = concepts(
                slot.model, record.x, layers[0], num_concepts=count, multilabel=slot.multilabel
            )
        tops = found.tops(slot.spec.label)
        out = [
            {"index": k, **map_entry(heat / heat.max().clamp(min=1e-12)), "top": tops[k]}
            for k, heat in enumerate(found.maps.float())
        ]
        return {
            "model": slot.name,
            "layer": found.layer,
            "error": round(found.error, 6),
            "concepts": out,
        }

    @staticmethod
    def _class_id(slot: ModelSlot, class_name: str) -> int | None:
        from ...data.classes import parse_target

        if not class_name.strip():
            return None
        found = parse_target(class_name, slot.spec.class_names, model=slot.name, what="class")
        if not isinstance(found, int):
            raise UsageError(f"class names one class; got {class_name!r}")
        return found
