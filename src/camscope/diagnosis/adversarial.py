"""Adversarial noise and the maps: does the original class's map survive an attack?

Seed 001 (the Grad-CAM paper, Sec. 6.2) attacks VGG-16 so that the original classes get a
near-zero probability, and shows that Grad-CAM for those classes still localizes the objects.
:func:`run_adversarial` measures it on any model and data:

* each image is resized to the model's input size, kept as 8-bit pixels in [0, 1], classified
  (the **clean class** = its top-1) and attacked (:mod:`camscope.diagnosis.attacks`: FGSM or PGD,
  away from the clean class, or towards ``target``), batched;
* **success**: the adversarial top-1 differs from the clean class (untargeted) or is the target
  (targeted); **success_8bit**: the same after rounding the adversarial image to 8 bits (what a
  PNG keeps). A targeted attack on an image the model already gives the target is no success:
  it is flagged (``already_target``), its ``success`` is None, and the success rates count only
  the other images (``already_target`` in the summary says how many were left out);
* maps (one :func:`camscope.explain` call per batch): the adversarial class and the original class
  on the adversarial image, the original class on the clean image; **similarity** of the original
  class's two maps: Spearman rank correlation of the pixels (0 when a map is constant, e.g. empty)
  and IoU of the top-15% pixels with evidence (:func:`camscope.metrics.robustness.top_region_iou`),
  and whether a map is **empty** (no positive evidence anywhere); with boxes (annotated data,
  ``builtin:N``), the **pointing game** (peak within ``tolerance`` px of any object's box; an
  empty map misses) of both maps. Several methods can be measured in one run
  (``similarity_by_method``); the first is drawn and reported as ``similarity``.

Writes ``adversarial.json``, ``<stem>.adv.png`` (8-bit), ``<stem>.adv.npy`` (float32 H x W x 3 in
[0, 1]: the exact adversarial input at the model's input size, which the model classifies as
reported) and ``<stem>.adversarial.png`` (clean image + map, adversarial image, its class's map,
the original class's map on it, the perturbation amplified).

Example:
    >>> result = run_adversarial(model, spec, open_images(["cat.jpg"]), "out/adv",
    ...                          AttackSettings(attack="pgd", eps=2 / 255, target=404))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.prediction import Prediction, classify
from ..data.dataset import LabelledData, Sample
from ..data.walk import naming_warnings
from ..errors import CamscopeError
from ..io import save_npy
from ..outputs import output_lock, write_json, write_picture
from .attacks import attack, default_step_size, to_8bit
from .batches import DiagnosisRun, DiagnosisSettings

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ..models import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class AttackSettings(DiagnosisSettings):
    """The attack and the maps of :func:`run_adversarial` (plain values, no argparse): the
    shared settings plus the attack's, the map ``methods`` and the pointing-game tolerance."""

    attack: str = "pgd"
    eps: float = 2 / 255
    steps: int = 10
    step_size: float | None = None
    target: int | None = None
    random_start: bool = False
    seed: int = 0
    methods: list[str] = field(default_factory=lambda: ["gradcam"])
    tolerance: float = 15.0


@dataclass
class AdversarialResult:
    """The summary written to ``adversarial.json``."""

    summary: dict[str, Any]

    @property
    def errors(self) -> list[dict[str, str]]:
        return list(self.summary["errors"])


def _norm(x: Tensor, spec: ModelSpec, inverse: bool = False) -> Tensor:
    """The model's normalisation ``(x - mean) / std`` of images in [0, 1] (or its inverse)."""
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * std + mean if inverse else (x - mean) / std


def unit_image(x: Tensor, spec: ModelSpec) -> Tensor:
    """A preprocessed input back in [0, 1], rounded to the 8-bit pixels it was made from."""
    return to_8bit(_norm(x, spec, inverse=True))


def _classify(model: nn.Module, x01: Tensor, spec: ModelSpec, multilabel: bool) -> Prediction:
    """The model's :class:`~camscope.core.prediction.Prediction` of images in [0, 1] (normalised
    as the attacks normalise them; a single-logit model has the classes 0 and 1)."""
    return classify(model, _norm(x01, spec), multilabel=multilabel)


def _uint8(x01: Tensor) -> np.ndarray:
    return (to_8bit(x01) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def _grid(
    out: Path,
    rec: dict[str, Any],
    clean: Tensor,
    adv: Tensor,
    maps: list[Tensor],
    s: AttackSettings,
) -> str:
    from PIL import Image

    from .. import viz

    clean_pil, adv_pil = Image.fromarray(_uint8(clean)), Image.fromarray(_uint8(adv))
    orig_clean, adv_class, orig_adv = (m.cpu().numpy() for m in maps)
    amplified = ((adv - clean) / (2 * s.eps) + 0.5).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    o, a, method = rec["clean_label"], rec["adversarial_label"], s.methods[0]
    panels = [
        viz.Panel(f"clean: {o} ({rec['clean_probability']:.2f})\n{method} for {o}", orig_clean),
        viz.Panel(
            f"adversarial: {a}\n({rec['adversarial_probability']:.2f})", rgb=np.asarray(adv_pil)
        ),
        viz.Panel(
            f"{method} for {a}",
            rgb=np.asarray(viz.overlay(adv_pil, adv_class, s.colormap, s.alpha)),
        ),
        viz.Panel(
            f"{method} for {o}\n(p = {rec['original_probability_adversarial']:.3f})",
            rgb=np.asarray(viz.overlay(adv_pil, orig_adv, s.colormap, s.alpha)),
        ),
        viz.Panel("perturbation\n(x' - x) / 2 eps + 1/2", rgb=amplified),
    ]
    name = f"{rec['stem']}.adversarial.png"
    goal = "" if s.target is None else f" towards {rec['target_label']}"
    goal += " (already the target class)" if rec["already_target"] else ""
    sim = rec["similarity"]
    title = (
        f"{s.attack.upper()}{goal}, eps {s.eps * 255:g}/255. {o} map, clean vs adversarial: "
        f"Spearman {sim['spearman']:.2f}, top-15% IoU {sim['top15_iou']:.2f}"
    )
    viz.save_grid(
        out / name, clean_pil, [("", panels)], colormap=s.colormap, alpha=s.alpha, title=title
    )
    return name


def _similarity(
    maps: Tensor, n: int, boxes: list[Tensor], tolerance: float
) -> list[dict[str, Any]]:
    """Per image: Spearman and top-15% IoU of the original class's map on the clean image
    (``maps[n + i, 0]``) and on the adversarial one (``maps[i, 1]``), whether either is empty (no
    positive evidence anywhere), and with boxes the pointing game of both (an empty map misses)."""
    from ..metrics.faithfulness import spearman
    from ..metrics.localization import pointing_hits
    from ..metrics.robustness import TOP_REGION, top_region_iou

    orig_adv, orig_clean = maps[:n, 1], maps[n:, 0]
    rho = spearman(orig_clean.flatten(1), orig_adv.flatten(1))
    iou = top_region_iou(orig_clean, orig_adv, TOP_REGION)
    out = []
    for i, b in enumerate(boxes):
        sim: dict[str, Any] = {
            "spearman": round(float(rho[i]), 4),
            "top15_iou": round(float(iou[i]), 4),
            "empty_clean": not bool(orig_clean[i].max() > 0),
            "empty_adversarial": not bool(orig_adv[i].max() > 0),
        }
        if b.shape[0]:
            gt = b[None].to(maps.device)
            valid = torch.ones(1, b.shape[0], dtype=torch.bool, device=maps.device)
            for key, m in (("pointing_clean", orig_clean), ("pointing_adversarial", orig_adv)):
                # an empty map points nowhere (its arg-max would be the top-left pixel)
                hit = bool(pointing_hits(m[i : i + 1], gt, valid, tolerance)[0])
                sim[key] = hit and bool(m[i].max() > 0)
        out.append(sim)
    return out


def _success(predicted: int, clean: int, target: int | None) -> bool | None:
    """Untargeted: the class changed; targeted: it is the target (None for an image the model
    already gives the target: nothing to attack, no success to count)."""
    if target is None:
        return predicted != clean
    return None if clean == target else predicted == target


def _attack_batch(
    model: nn.Module,
    spec: ModelSpec,
    batch: list[tuple[Sample, Tensor, Tensor]],
    out: Path,
    s: AttackSettings,
) -> list[dict[str, Any]]:
    from PIL import Image

    x01 = torch.cat([t for _, t, _ in batch])
    p_clean = _classify(model, x01, spec, s.multilabel)
    clean = p_clean.classes
    labels = clean if s.target is None else torch.full_like(clean, s.target)
    adv = attack(
        s.attack,
        model,
        x01,
        labels,
        s.eps,
        steps=s.steps,
        step_size=s.step_size,
        random_start=s.random_start,
        seed=s.seed,
        mean=spec.mean,
        std=spec.std,
        targeted=s.target is not None,
    )
    p_adv = _classify(model, adv, spec, s.multilabel)
    p_8bit = _classify(model, to_8bit(adv), spec, s.multilabel)
    adv_class, class_8bit = p_adv.classes, p_8bit.classes
    n = x01.shape[0]
    targets = torch.cat([torch.stack([adv_class, clean], 1), torch.stack([clean, clean], 1)])
    sources = [item.source for item, _, _ in batch]
    with naming_warnings([f"{src} (adversarial)" for src in sources] + sources):
        res = s.explain(model, _norm(torch.cat([adv, x01]), spec), s.methods, targets)
    boxes = [b for _, _, b in batch]
    by_method = {m: _similarity(res.maps[m], n, boxes, s.tolerance) for m in s.methods}
    first = res.maps[s.methods[0]]
    records = []
    for i, (item, _, _) in enumerate(batch):
        c, a, c8 = int(clean[i]), int(adv_class[i]), int(class_8bit[i])
        rec: dict[str, Any] = {
            "path": item.source,
            "stem": item.stem,
            "label": item.label,
            "clean_class": c,
            "clean_label": spec.label(c),
            "clean_probability": round(p_clean.probability(i, c), 6),
            "target_label": None if s.target is None else spec.label(s.target),
            "already_target": s.target is not None and c == s.target,
            "adversarial_class": a,
            "adversarial_label": spec.label(a),
            "adversarial_probability": round(p_adv.probability(i, a), 6),
            "original_probability_adversarial": round(p_adv.probability(i, c), 6),
            "success": _success(a, c, s.target),
            "adversarial_class_8bit": c8,
            "success_8bit": _success(c8, c, s.target),
            "linf": round(float((adv[i] - x01[i]).abs().max()) * 255, 4),
            "similarity": by_method[s.methods[0]][i],
            "similarity_by_method": {m: sims[i] for m, sims in by_method.items()},
        }
        save_npy(out / f"{item.stem}.adv.npy", adv[i].permute(1, 2, 0).cpu().numpy())
        write_picture(out / f"{item.stem}.adv.png", Image.fromarray(_uint8(adv[i])))
        maps = [first[n + i, 0], first[i, 0], first[i, 1]]  # clean, adversarial class, original
        grid = _grid(out, rec, x01[i], adv[i], maps, s)
        rec["files"] = [f"{item.stem}.adv.png", f"{item.stem}.adv.npy", grid]
        records.append(rec)
    return records


def run_adversarial(
    model: nn.Module,
    spec: ModelSpec,
    data: LabelledData,
    out_dir: str | Path,
    settings: AttackSettings | None = None,
) -> AdversarialResult:
    """Attack every image of ``data`` and compare the maps (see the module docstring); the
    output folder is locked for the run."""
    s = settings or AttackSettings()
    with output_lock(out_dir, "camscope adversarial"):
        run = DiagnosisRun(model, out_dir, s)
        records: list[dict[str, Any]] = []
        for walked in run.batches(data.items, spec):
            loaded = [
                (it, unit_image(p.x, spec).to(run.device), p.scaled(it.object_boxes))
                for it, p in walked.ok
            ]
            if not loaded:
                continue
            try:
                records.extend(_attack_batch(model, spec, loaded, run.out, s))
            except CamscopeError:
                raise  # a bad method, layer or target concerns every image: usage error
            except (RuntimeError, ValueError) as err:
                log.debug("the attack failed", exc_info=True)
                for it, _, _ in loaded:
                    run.skip(it, f"{type(err).__name__}: {err}")
        summary = _summary(spec, data, s, records, run.errors)
        write_json(run.out / "adversarial.json", summary)
    return AdversarialResult(summary)


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    """The mean of ``key`` over the rows that have it (None when none has), to 4 decimals."""
    values = [float(row[key]) for row in rows if row.get(key) is not None]
    return round(sum(values) / len(values), 4) if values else None


def _summary(
    spec: ModelSpec,
    data: LabelledData,
    s: AttackSettings,
    records: list[dict[str, Any]],
    errors: list[dict[str, str]],
) -> dict[str, Any]:
    keys = (
        "spearman",
        "top15_iou",
        "empty_clean",
        "empty_adversarial",
        "pointing_clean",
        "pointing_adversarial",
    )

    def means(method: str) -> dict[str, float | None]:
        sims = [r["similarity_by_method"][method] for r in records]
        return {key: _mean(sims, key) for key in keys}

    left_out = ("progress", "colormap", "alpha", "max_pixels", "batch_size", "on_skip")
    settings = {f.name: getattr(s, f.name) for f in fields(s) if f.name not in left_out}
    if s.attack == "pgd" and s.step_size is None:
        settings["step_size"] = default_step_size(s.eps, s.steps)
    return {
        "model": spec.name,
        "data": data.description,
        "settings": settings,
        "images": records,
        "success_rate": _mean(records, "success"),
        "success_rate_8bit": _mean(records, "success_8bit"),
        "already_target": sum(r["already_target"] for r in records),
        "similarity": means(s.methods[0]),
        "similarity_by_method": {m: means(m) for m in s.methods},
        "errors": errors,
    }
