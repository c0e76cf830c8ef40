"""Running the audit: explain every image for its predicted and its true class, in batches.

Per batch: one :func:`camscope.explain` call for the top-1 class (its logits give the prediction
and the accepted class the model scores highest), and one more, on the misclassified images only,
for that true class (for the others the two maps are the same map). Both maps go to
:func:`camscope.audit.stats.image_stats` (and, when the data set has masks, the mask's energy
share of the predicted class's map is kept beside the boxes').
Then :func:`camscope.audit.stats.summarise_class` aggregates each class, and the most affected
images of the flagged classes are explained again for the report.

The images are walked by :class:`camscope.data.walk.Walk`: a file that cannot be read is reported
(``on_skip``, default a logged warning), listed in :attr:`AuditRun.failed` and skipped; the others
go on. The model is never changed (:func:`camscope.explain` restores everything).

Example:
    >>> data = read_data("out/bias/test", spec.class_names)  # doctest: +SKIP
    >>> run = run_audit(model, spec, data, AuditConfig(method="gradcam"))  # doctest: +SKIP
    >>> run.classes["cat"].flags  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.prediction import Prediction
from ..core.result import Explanation
from ..data.dataset import LabelledData, LoadOptions, Prepared, Sample
from ..data.progress import Progress
from ..data.walk import SkipFn, Walk, naming_warnings
from ..errors import ImageLoadError, UsageError
from ..models.spec import model_device
from .hotspot import object_energy
from .stats import (
    AuditThresholds,
    ClassSummary,
    ImageStats,
    image_stats,
    most_affected,
    nanmean,
    summarise_class,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditConfig:
    """How to audit.

    Attributes:
        method: the CAM method (a registered name).
        layer: the layer (``"auto"``, a name, ``first``/``middle``/``last``...).
        batch_size: images per explain call.
        grid: side of the pooled maps the hot spot is found on.
        thresholds: when classes are flagged.
        examples: most affected images per illustrated class (0: none).
        max_example_classes: classes illustrated at most (flagged ones first).
        method_options: passed to :func:`camscope.explain`.
        max_pixels: refuse larger images (default: the library's limit).
        multilabel: the classes are independent sigmoids (a multi-label head), not a softmax.
    """

    method: str = "gradcam"
    layer: str | list[str] = "auto"
    batch_size: int = 16
    grid: int = 32
    thresholds: AuditThresholds = field(default_factory=AuditThresholds)
    examples: int = 4
    max_example_classes: int = 12
    method_options: Mapping[str, Any] = field(default_factory=dict)
    max_pixels: int | None = None
    multilabel: bool = False

    def explain(self, model: nn.Module, x: Tensor, targets: Any) -> Explanation:
        """:func:`camscope.explain` with the audit's method, layer and options; strict: a method
        that cannot run at the layer is the user's error, not a silent gap."""
        from ..core.engine import explain

        return explain(
            model,
            x,
            self.method,
            self.layer,
            targets,
            method_options=self.method_options,
            strict=True,
            multilabel=self.multilabel,
        )


@dataclass
class ImageRecord:
    """One audited image: ``stats`` of the true class's map, ``predicted_stats`` of the predicted
    class's map (the same map when the prediction is right)."""

    id: str
    label: str
    target: int
    predicted: int
    probability: float
    correct: bool
    accepted: tuple[int, ...]
    mask_energy: float
    stats: ImageStats
    predicted_stats: ImageStats


@dataclass
class Example:
    """One most-affected image for the report, at the model's input size."""

    id: str
    label: str
    predicted: str
    probability: float
    image: np.ndarray
    true_map: np.ndarray
    predicted_map: np.ndarray
    boxes: list[tuple[float, float, float, float]]
    score: str


@dataclass
class AuditRun:
    """What :func:`run_audit` produced."""

    classes: dict[str, ClassSummary]
    records: list[ImageRecord]
    layer: str
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    examples: dict[str, list[Example]] = field(default_factory=dict)

    @property
    def flagged(self) -> list[str]:
        return [name for name, c in self.classes.items() if c.flags]


def _true_target(prediction: Prediction, i: int, sample: Sample) -> int:
    """The accepted class the model finds most probable for image ``i``."""
    bad = [c for c in sample.class_ids if not 0 <= c < prediction.num_classes]
    if bad:
        raise UsageError(
            f"class {str(sample.label)!r} maps to model class {bad[0]}, but the model has "
            f"{prediction.num_classes} classes; check the data set's labels against the model's "
            "classes"
        )
    return prediction.best_of(i, sample.class_ids)


def _regions(
    loaded: list[Prepared], size: tuple[int, int], device: torch.device
) -> tuple[Tensor | None, Tensor | None]:
    """Box-union and mask regions ``(B, H, W)`` at the input size (None when no image has any)."""
    from torch.nn.utils.rnn import pad_sequence

    from ..metrics.localization import box_masks

    boxes_region = masks_region = None
    if any(p.sample.boxes for p in loaded):
        scaled = [p.scaled(p.sample.boxes) for p in loaded]
        boxes = pad_sequence(scaled, batch_first=True)
        valid = pad_sequence([torch.ones(len(b), dtype=torch.bool) for b in scaled], True)
        boxes_region = box_masks(boxes, valid, size).to(device)
    masks = [p.sample.read_mask(p.image.size) for p in loaded]
    if any(mask is not None for mask in masks):
        masks_region = torch.zeros(len(loaded), *size, dtype=torch.bool)
        for i, mask in enumerate(masks):
            if mask is not None:
                tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
                masks_region[i] = F.interpolate(tensor, size=size, mode="nearest")[0, 0] > 0.5
        masks_region = masks_region.to(device)
    return boxes_region, masks_region


def run_audit(
    model: nn.Module,
    spec: Any,
    data: LabelledData,
    config: AuditConfig,
    *,
    progress: bool | Progress = False,
    on_skip: SkipFn | None = None,
) -> AuditRun:
    """Audit ``model`` on ``data`` (see the module docstring).

    Args:
        model: the classifier; never modified.
        spec: its :class:`camscope.models.ModelSpec` (input size, normalisation, class names).
        data: from :func:`camscope.data.read.read_data` (mapped labels required).
        config: method, layer, thresholds.
        progress: a progress bar on stderr (True, or a :class:`Progress`).
        on_skip: told ``(source, reason)`` of every image that cannot be read.
    """
    config.thresholds.validate()
    records: list[ImageRecord] = []
    layer = str(config.layer)
    walk: Walk[Prepared] = Walk(
        data.items, spec=spec, options=LoadOptions(config.max_pixels),
        batch_size=config.batch_size, progress=progress, label="audit", on_skip=on_skip,
    )  # fmt: skip
    for batch in walk:
        if batch.ok:
            layer = _audit_batch(model, spec, [p for _, p in batch.ok], config, records)
    classes = _summaries(records, data.classes, config.thresholds)
    failed = [(s.id, s.reason) for s in walk.skipped]
    run = AuditRun(classes, records, layer, failed, list(data.skipped))
    if config.examples > 0:
        run.examples = collect_examples(model, spec, data, run, config)
    return run


def _audit_batch(
    model: nn.Module,
    spec: Any,
    loaded: list[Prepared],
    config: AuditConfig,
    records: list[ImageRecord],
) -> str:
    """Explain a batch for the predicted and the true class, keep each image's record and
    return the layer's name."""
    samples = [p.sample for p in loaded]
    for sample in samples:
        if not sample.class_ids:
            raise UsageError(
                f"{sample.id}: its class {sample.label!r} is no class of the model, so its "
                "map cannot be audited; map the labels onto the model's classes"
            )
    x = torch.cat([p.x for p in loaded]).to(model_device(model))
    with naming_warnings(samples):
        res = config.explain(model, x, "top1")
    prediction = res.prediction  # softmax, or sigmoid for single-logit and multi-label heads
    if prediction is None:  # pragma: no cover - top1 targets always keep the logits
        raise UsageError("the model's output has no class scores to audit")
    pred_maps = res.maps[config.method]
    predicted = res.targets.reshape(-1)
    target = torch.tensor(
        [_true_target(prediction, i, s) for i, s in enumerate(samples)], device=predicted.device
    )
    true_maps = pred_maps.clone()  # the same map where the prediction is right
    wrong = (target != predicted).nonzero().flatten()
    if wrong.numel():
        with naming_warnings([samples[int(k)] for k in wrong]):
            true_maps[wrong] = config.explain(model, x[wrong], target[wrong]).maps[config.method]
    size = (int(spec.input_size[0]), int(spec.input_size[1]))
    boxes_region, masks_region = _regions(loaded, size, x.device)
    stats = image_stats(true_maps, boxes_region, config.grid)
    stats_pred = image_stats(pred_maps, boxes_region, config.grid)
    energy_mask = None if masks_region is None else object_energy(pred_maps, masks_region).cpu()
    for i, sample in enumerate(samples):
        c = int(predicted[i])
        records.append(
            ImageRecord(
                id=sample.id,
                label=str(sample.label),
                target=int(target[i]),
                predicted=c,
                probability=float(prediction.probabilities[i, c]),
                correct=c in sample.class_ids,
                accepted=sample.class_ids,
                mask_energy=math.nan
                if energy_mask is None or sample.mask is None
                else float(energy_mask[i]),
                stats=stats[i],
                predicted_stats=stats_pred[i],
            )
        )
    return ",".join(res.layer_names)


def _summaries(
    records: list[ImageRecord], classes: list[str], thresholds: AuditThresholds
) -> dict[str, ClassSummary]:
    names = list(classes) + sorted({r.label for r in records} - set(classes))
    accepted = {r.label: r.accepted for r in records}
    out: dict[str, ClassSummary] = {}
    for name in names:
        mine = [r for r in records if r.label == name]
        if not mine:
            continue
        said = [r.predicted_stats for r in records if r.predicted in accepted[name]]
        extra = {
            "predicted_n": len(said),
            "object_energy_true": nanmean([r.stats.object_energy for r in mine]),
            "mask_energy": nanmean([r.mask_energy for r in mine]),
        }
        out[name] = summarise_class(
            name,
            [r.predicted_stats for r in mine],
            [r.correct for r in mine],
            thresholds,
            predicted=said,
            extra=extra,
        )
    return out


def illustrated_classes(run: AuditRun, limit: int) -> list[str]:
    """The flagged classes, or when none is flagged the classes whose maps hit their hot spot
    most often, at most ``limit``."""
    flagged = run.flagged
    if flagged:
        return flagged[:limit]
    ranked = sorted(
        (c for c in run.classes.values() if c.hotspot_hits is not None),
        key=lambda c: -(c.hotspot_hits or 0.0),
    )
    return [c.name for c in ranked[: min(limit, 3)]]


def collect_examples(
    model: nn.Module, spec: Any, data: LabelledData, run: AuditRun, config: AuditConfig
) -> dict[str, list[Example]]:
    """Explain the most affected images of the illustrated classes again for the report."""
    by_id = {item.id: item for item in data.items}
    device = model_device(model)
    out: dict[str, list[Example]] = {}
    for name in illustrated_classes(run, config.max_example_classes):
        summary = run.classes[name]
        if summary.object_energy is not None:  # boxes: the lowest object energy of the class
            mine = [r for r in run.records if r.label == name and r.id in by_id]
        else:  # no boxes: the images predicted as the class that look most at its hot spot
            ids = next(r.accepted for r in run.records if r.label == name)
            mine = [r for r in run.records if r.predicted in ids and r.id in by_id]
        picks = most_affected(summary, [r.predicted_stats for r in mine], config.examples)
        chosen, loaded = [], []
        for r in (mine[i] for i in picks):
            try:
                loaded.append(by_id[r.id].prepare(spec, LoadOptions(config.max_pixels)))
                chosen.append(r)
            except ImageLoadError as err:  # changed on disk since the audit pass
                log.warning("no example picture for %s: %s", r.id, err.reason)
        if not chosen:
            continue
        x = torch.cat([p.x for p in loaded]).to(device)
        targets = torch.tensor([[r.target, r.predicted] for r in chosen], device=device)
        with naming_warnings([p.sample for p in loaded]):
            res = config.explain(model, x, targets)
        maps = res.maps[config.method].float().cpu().numpy()
        h, w = x.shape[-2:]
        items = []
        for i, (r, p) in enumerate(zip(chosen, loaded)):
            sx, sy = p.scale
            picture = np.asarray(p.image.convert("RGB").resize((w, h)), dtype=np.uint8)
            energy, peak = r.predicted_stats.object_energy, r.predicted_stats.peak
            score = (
                f"object energy {energy:.0%}"
                if not math.isnan(energy)
                else f"the predicted class's map peaks at ({peak[0]:.2f}, {peak[1]:.2f})"
                if peak
                else "empty map"
            )
            items.append(
                Example(
                    id=r.id,
                    label=r.label,
                    predicted=spec.label(r.predicted),
                    probability=r.probability,
                    image=picture,
                    true_map=maps[i, 0],
                    predicted_map=maps[i, 1],
                    boxes=[(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in p.sample.boxes],
                    score=score,
                )
            )
        out[name] = items
    return out
