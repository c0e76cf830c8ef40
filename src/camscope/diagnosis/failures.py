"""Failure modes: why did the model get these images wrong? (``camscope failures``)

Seed 001 (the Grad-CAM paper, Sec. 6.1) explains VGG-16's mistakes with Guided Grad-CAM for the
predicted and for the true class and finds that the mistakes have reasons (an ambiguous object,
the other class's evidence elsewhere in the image). :func:`diagnose_failures` does this for every
misclassified image of a labelled data set (:func:`camscope.data.read.read_data`):

* every image is classified (batched); it is **correct** when the top-1 class is one of its
  accepted classes. Its **true class** is the accepted class the model scores highest (as in
  ``camscope evaluate``), its **rank** is 1 + the number of classes scored higher;
* every misclassified image is explained in one :func:`camscope.explain` call per batch: the
  map (``method``, default Grad-CAM) for the predicted and the true class, Guided Grad-CAM for
  both, and the counterfactual map (Grad-CAM with negated gradients, seed 001 Sec. 3) of the
  predicted class; ``<stem>.failure.png`` shows them;
* **overlap** = IoU of the top-15% pixels of the two maps
  (:func:`camscope.metrics.robustness.top_region_iou`): low = the evidence for the wrong class
  lies elsewhere, high = the same region supports both (an ambiguous object).

Writes ``failures.json`` (``{"failures": [...]}`` sorted by the probability of the wrong class,
plus per-class accuracy), ``per_class.csv``, ``confusion.png`` (data classes; predictions outside
them are "other") and a self-contained ``report.html``. An image that cannot be read or mapped is
listed under ``errors`` and the others go on.

Example:
    >>> data = read_data("pets/", spec.class_names)  # doctest: +SKIP
    >>> result = diagnose_failures(model, spec, data, "out/failures")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.prediction import classify
from ..data.dataset import LabelledData, Sample
from ..data.walk import naming_warnings
from ..errors import CamscopeError, UsageError
from ..outputs import output_lock, write_atomic, write_csv, write_json
from ..viz import confusion_png
from .batches import DiagnosisRun, DiagnosisSettings
from .report import OTHER, confusion_counts, failures_html

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ..core.prediction import Prediction
    from ..models import ModelSpec

log = logging.getLogger(__name__)

GUIDED, COUNTERFACTUAL = "guided-gradcam", "counterfactual"


@dataclass
class FailureSettings(DiagnosisSettings):
    """How :func:`diagnose_failures` explains (plain values, no argparse): the shared settings
    plus the compared map ``method`` and how many grids ``report.html`` embeds."""

    method: str = "gradcam"
    embed: int = 100


@dataclass
class FailuresResult:
    """The summary written to ``failures.json`` and the path of ``report.html``."""

    summary: dict[str, Any]
    report: Path

    @property
    def errors(self) -> list[dict[str, str]]:
        return list(self.summary["errors"])


def _record(item: Sample, p: Prediction, i: int, spec: ModelSpec) -> dict[str, Any]:
    """Image ``i``'s classes and probabilities from the batch's :class:`Prediction`."""
    try:
        true = p.best_of(i, item.class_ids)
    except ValueError as err:
        raise UsageError(
            f"{item.source}: its label {item.label!r} maps to a class the model lacks ({err}); "
            "check the data set's labels against the model's classes"
        ) from None
    predicted = int(p.classes[i])
    return {
        "path": item.source,
        "stem": item.stem,
        "label": item.label,
        "correct": p.correct(i, item.class_ids),
        "true_class": true,
        "true_label": spec.label(true),
        "true_probability": round(p.probability(i, true), 6),
        "true_rank": p.rank(i, true),
        "predicted_class": predicted,
        "predicted_label": spec.label(predicted),
        "predicted_probability": round(p.probability(i, predicted), 6),
        "top5": [
            {"class": c, "label": spec.label(c), "probability": round(v, 6)}
            for c, v in p.ranked(i, 5)
        ],
    }


def _grid(out: Path, image: Any, rec: dict[str, Any], res: Any, i: int, s: FailureSettings) -> str:
    from .. import viz

    pred, true = rec["predicted_label"], rec["true_label"]
    guided = res.raw[GUIDED][i].cpu().numpy()  # (2, 3, H, W)
    panels = [
        viz.Panel(
            f"{s.method}: predicted\n{pred} ({rec['predicted_probability']:.2f})",
            res.maps[s.method][i, 0].cpu().numpy(),
        ),
        viz.Panel(
            f"{s.method}: true\n{true} ({rec['true_probability']:.2f})",
            res.maps[s.method][i, 1].cpu().numpy(),
        ),
        viz.Panel(f"Guided Grad-CAM\n{pred}", rgb=viz.guided_to_rgb(guided[0])),
        viz.Panel(f"Guided Grad-CAM\n{true}", rgb=viz.guided_to_rgb(guided[1])),
        viz.Panel(f"counterfactual\nagainst {pred}", res.maps[COUNTERFACTUAL][i, 0].cpu().numpy()),
    ]
    name = f"{rec['stem']}.failure.png"
    title = f"{rec['path']}: overlap {rec['overlap']:.2f}"
    viz.save_grid(
        out / name, image, [("", panels)], colormap=s.colormap, alpha=s.alpha, title=title
    )
    return name


def _explain_failures(
    model: nn.Module,
    x: Tensor,
    records: list[dict[str, Any]],
    images: list[Any],
    out: Path,
    s: FailureSettings,
) -> None:
    from ..metrics.robustness import top_region_iou

    methods = list(dict.fromkeys([s.method, GUIDED, COUNTERFACTUAL]))
    targets = torch.tensor([[r["predicted_class"], r["true_class"]] for r in records])
    with naming_warnings([str(r["path"]) for r in records]):
        res = s.explain(model, x, methods, targets.to(x.device))
    overlap = top_region_iou(res.maps[s.method][:, 0], res.maps[s.method][:, 1])
    for i, rec in enumerate(records):
        rec["overlap"] = round(float(overlap[i]), 4)
        rec["grid"] = _grid(out, images[i], rec, res, i, s)


def diagnose_failures(
    model: nn.Module,
    spec: ModelSpec,
    data: LabelledData,
    out_dir: str | Path,
    settings: FailureSettings | None = None,
) -> FailuresResult:
    """Classify every image of ``data``, explain the mistakes and write the reports to
    ``out_dir`` (see the module docstring), which is locked for the run."""
    s = settings or FailureSettings()
    with output_lock(out_dir, "camscope failures"):
        run = DiagnosisRun(model, out_dir, s)
        records: list[dict[str, Any]] = []
        for walked in run.batches(data.items, spec, need_class=True):
            loaded = walked.ok
            if not loaded:
                continue
            x = torch.cat([p.x for _, p in loaded]).to(run.device)
            prediction = classify(model, x, multilabel=s.multilabel).cpu()
            batch = [_record(sample, prediction, i, spec) for i, (sample, _) in enumerate(loaded)]
            wrong = [i for i, r in enumerate(batch) if not r["correct"]]
            try:
                if wrong:
                    failed = [batch[i] for i in wrong]
                    images = [loaded[i][1].image for i in wrong]
                    _explain_failures(model, x[wrong], failed, images, run.out, s)
            except CamscopeError:
                raise  # a bad method/layer/option concerns every image: usage error
            except (RuntimeError, ValueError) as err:
                log.debug("explaining the failures failed", exc_info=True)
                for i in wrong:
                    run.skip(loaded[i][0], f"{type(err).__name__}: {err}")
                batch = [r for i, r in enumerate(batch) if i not in wrong]
            records.extend(batch)
        return _write(run, spec, data, records, s)


def _write(
    run: DiagnosisRun,
    spec: ModelSpec,
    data: LabelledData,
    records: list[dict[str, Any]],
    s: FailureSettings,
) -> FailuresResult:
    """``failures.json``, ``per_class.csv``, ``confusion.png`` and ``report.html`` in ``run.out``."""
    out = run.out
    per_class: dict[str, dict[str, Any]] = {}
    for name in data.classes:
        mine = [r for r in records if r["label"] == name]
        correct = sum(r["correct"] for r in mine)
        per_class[name] = {
            "images": len(mine),
            "correct": correct,
            "accuracy": correct / len(mine) if mine else None,
        }
    failures = sorted(
        (r for r in records if not r["correct"]), key=lambda r: -r["predicted_probability"]
    )
    for r in failures:
        r.pop("correct")
    summary = {
        "model": spec.name,
        "data": data.description,
        "method": s.method,
        "layer": s.layer,
        "classified": len(records),
        "accuracy": (len(records) - len(failures)) / len(records) if records else None,
        "per_class": per_class,
        "failures": failures,
        "errors": run.errors,
    }
    write_json(out / "failures.json", summary)
    table: list[list[Any]] = [["class", "images", "correct", "accuracy"]]
    for name, stats in per_class.items():
        acc = "" if stats["accuracy"] is None else f"{stats['accuracy']:.4f}"
        table.append([name, stats["images"], stats["correct"], acc])
    write_csv(out / "per_class.csv", table)
    confusion = None
    if data.classes and records:
        pairs = [(r["label"], _data_class(r["predicted_class"], data)) for r in records]
        counts = confusion_counts(data.classes, pairs)
        confusion = confusion_png(counts, data.classes, [*data.classes, OTHER], spec.name)
        write_atomic(out / "confusion.png", confusion)
    report = failures_html(out, summary, confusion, s.embed)
    return FailuresResult(summary, report)


def _data_class(predicted: int, data: LabelledData) -> str | None:
    """The first data class that accepts the predicted model class, or None ("other")."""
    return next((name for name in data.classes if predicted in data.class_ids.get(name, ())), None)
