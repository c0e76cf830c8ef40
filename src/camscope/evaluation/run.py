"""Run the evaluation protocols of the CAM papers on a model and a data set (``camscope evaluate``).

For every batch of images this module makes the :func:`camscope.explain` calls the metrics need
(top-5 maps for localization error, maps of the ground-truth class for the rest, and for
two-object images the other object's class), runs the selected metric families
(:mod:`camscope.evaluation.registry`) and appends one JSON line per image and method/layer to
``results.jsonl``, so an interrupted run resumes where it stopped. :func:`summarise` turns the lines
into the leaderboard (means with 95% intervals over images).

Which class is explained: for each object the accepted class (see
:class:`camscope.data.annotations.GroundTruth`) the model scores highest, as in TorchRay's pointing
game and the Grad-CAM paper's "ground-truth class" maps; top-1/top-5 localization error use the
model's own top classes.

The output folder is locked for the run (:func:`camscope.outputs.output_lock`). The images still
to do are walked by :class:`camscope.data.walk.Walk`, one batch at a time (so a large
``builtin:N`` or data set never sits in memory whole); an image that cannot be read is reported
(``on_failure``, ``results.json``) and skipped, and the run goes on. :func:`read_rows` reads
``results.jsonl`` back, skipping a truncated last line and counting a row that two writers
appended once.

Example:
    >>> config = EvalConfig(methods=["gradcam", "layercam"], metrics=["loc", "drop"])  # doctest: +SKIP
    >>> run_evaluation(model, spec, read_data("builtin:50").items, config, "out/eval")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.dataset import LoadOptions, Sample, sample_ids
from ..data.progress import Progress
from ..data.walk import SkipFn, Walk, naming_warnings
from ..errors import ImageLoadError, UsageError
from ..models.spec import model_device
from ..outputs import finite, output_lock, write_atomic, write_json
from ..perturbation.fastpath import FastForward
from .config import EvalConfig, config_differences
from .scoring import CountingForward, Timing, evaluate_batch, to_input
from .summary import summarise, write_csv

log = logging.getLogger(__name__)

__all__ = ["RunResult", "collect_examples", "read_rows", "run_evaluation", "sample_ids"]


@dataclass
class RunResult:
    """What :func:`run_evaluation` produced.

    Attributes:
        rows: the rows of the images the current settings select (also those of earlier sessions).
        failed: ``{"id", "source", "reason"}`` of every image that could not be evaluated.
    """

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    examples: dict[str, Any]
    failed: list[dict[str, str]] = field(default_factory=list)


def _as_sequence(samples: Sequence[Sample] | Iterable[Sample]) -> Sequence[Sample]:
    if hasattr(samples, "__getitem__") and hasattr(samples, "__len__"):
        return samples  # type: ignore[return-value]
    return list(samples)


def run_evaluation(
    model: nn.Module,
    spec: Any,
    samples: Sequence[Sample] | Iterable[Sample],
    config: EvalConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool | Progress = True,
    examples: int = 4,
    max_pixels: int | None = None,
    on_failure: SkipFn | None = None,
) -> RunResult:
    """Evaluate ``config.methods`` on ``samples`` and write ``results.jsonl`` / ``config.json``.

    Args:
        model: the classifier (in eval mode; never modified).
        spec: a :class:`camscope.models.ModelSpec` (input size, normalisation, class names).
        samples: the data (``items`` of :func:`camscope.data.read.read_data`, or any sequence of
            samples; read one batch at a time).
        config: what to run (recorded in ``config.json``).
        out_dir: output folder, locked for the run; ``results.jsonl`` gets one line per image and
            method/layer, appended after every batch.
        resume: keep the rows already in ``out_dir`` and skip their images; the stored config must
            match (else a :class:`UsageError` naming each differing setting). Without it an
            existing ``results.jsonl`` is an error.
        progress: a progress bar with ETA on stderr (True, or a :class:`Progress`).
        examples: images kept per method for the report's example grids (best and worst).
        max_pixels: pixel cap of :func:`camscope.io.load_image`.
        on_failure: called with (image, reason) for each image that is skipped; default: a
            logged warning.

    Returns:
        :class:`RunResult`: rows and summary of the images these settings select (a resumed run
        with a smaller ``--limit`` reports only those), and the failures.
    """
    config.validate()
    data = _as_sequence(samples)
    ids = sample_ids(data)
    if len(set(ids)) != len(ids):
        from collections import Counter

        dupes = sorted(k for k, v in Counter(ids).items() if v > 1)[:3]
        raise UsageError(f"sample ids must be unique; repeated: {dupes} (two images share a name)")
    with output_lock(out_dir, "camscope evaluate") as out:
        from ..models.fingerprint import weights_digest

        # the model's tensors, not its name or path: a run folder or file replaced since cannot resume
        cfg = {**asdict(config), "weights_digest": weights_digest(model)}
        cfg = json.loads(json.dumps(cfg))  # as read back
        rows = _stored_rows(out, cfg, config, resume)
        done = {r["id"] for r in rows}
        device = model_device(model)
        forward = CountingForward(model, fast=FastForward(model, device))  # the run's own
        timing: Timing = defaultdict(float)
        clock = _SessionClock(out / "timing.json")
        evaluated = 0
        walk: Walk[Any] = Walk(
            data,
            spec=spec,
            options=LoadOptions(max_pixels),
            batch_size=config.batch_size,
            positions=[i for i, sid in enumerate(ids) if sid not in done],
            progress=progress,
            label="evaluate",
            on_skip=on_failure,
        )
        for chunk in walk:
            batch = [sample for sample, _ in chunk.ok]
            if batch:
                x = torch.cat([p.x for _, p in chunk.ok]).to(device)
                scales = [p.scale for _, p in chunk.ok]
                new_rows: list[dict[str, Any]] = []
                for layer in config.layers:
                    new_rows += evaluate_batch(
                        model, spec, batch, x, scales, config, layer, forward, timing
                    )[0]
                append_rows(out / "results.jsonl", new_rows)
                rows.extend(new_rows)
                evaluated += len(batch)
            clock.update(evaluated, forward, timing)
        failed = [{"id": s.id, "source": s.source, "reason": s.reason} for s in walk.skipped]
        selected = set(ids)
        rows = [r for r in rows if r["id"] in selected]
        summary = summarise(rows)
        summary["sanity"] = None
        if "sanity" in config.metrics:
            skipped = {f["id"] for f in failed}
            summary["sanity"] = _sanity(model, spec, data, ids, config, out, max_pixels, skipped)
        summary["timing"] = clock.update(evaluated, forward, timing)
        summary["failed"] = failed
        write_json(out / "results.json", {"config": cfg, **summary})
        write_csv(out / "results.csv", summary)
        shown: dict[str, Any] = {}
        if examples:
            shown = collect_examples(model, spec, data, rows, config, examples, max_pixels)
        return RunResult(out, rows, summary, shown, failed)


def _stored_rows(
    out: Path, cfg: dict[str, Any], config: EvalConfig, resume: bool
) -> list[dict[str, Any]]:
    """Check a resumed run's stored settings against ``cfg`` and record ``cfg``; returns the
    stored rows of the images that every method and layer has done (the others are dropped from
    ``results.jsonl`` and evaluated again)."""
    jsonl, cfg_path = out / "results.jsonl", out / "config.json"
    if jsonl.exists() and jsonl.stat().st_size > 0:
        if not resume:
            raise UsageError(
                f"{jsonl} exists; pass --resume to continue that run or choose another --out"
            )
        try:
            stored_cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else None
        except (OSError, json.JSONDecodeError):
            stored_cfg = None
        if stored_cfg is None:
            raise UsageError(f"cannot resume {out}: its config.json is missing or unreadable")
        diff = config_differences(stored_cfg, cfg)
        if diff:
            raise UsageError(
                f"cannot resume {out}: settings differ from the stored run: {'; '.join(diff)}. "
                "Rerun with the stored settings or choose another --out"
            )
    if not resume:  # a fresh run: nothing of an earlier one in this folder counts
        for stale in ("timing.json", "sanity.json"):
            (out / stale).unlink(missing_ok=True)
    write_json(cfg_path, cfg)
    stored, clean = scan_rows(jsonl) if resume else ([], True)
    expected = {(m, layer) for m in config.methods for layer in config.layers}
    have: dict[str, set[tuple[str, str]]] = {}
    for r in stored:
        have.setdefault(str(r["id"]), set()).add(row_key(r)[1:])
    done = {k for k, v in have.items() if expected <= v}
    rows = [r for r in stored if r["id"] in done]
    if len(rows) != len(stored) or not clean or (not resume and jsonl.exists()):
        # drop partial images (they are evaluated again) by writing aside and renaming: a kill
        # at any moment leaves the old file or the new one, never an empty one
        write_atomic(jsonl, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """What makes a row unique: image id, method and the layer as asked."""
    return str(row.get("id")), str(row.get("method")), str(row.get("asked_layer", row.get("layer")))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl``: a truncated line from an interrupted run is skipped, and a
    row repeated for the same (image, method, layer) counts once (the first is kept)."""
    return scan_rows(path)[0]


def scan_rows(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """:func:`read_rows` and whether the file is clean (every line a new row, ending in a
    newline), i.e. whether appending to it is safe as it is."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows, True
    text = path.read_text(encoding="utf-8", errors="replace")
    clean = not text or text.endswith("\n")
    seen: set[tuple[str, str, str]] = set()
    dropped = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s: skipping a truncated line (interrupted run)", path)
            clean = False
            continue
        if not isinstance(row, dict) or "id" not in row:
            clean = False
            continue
        key = row_key(row)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        rows.append(row)
    if dropped:
        log.warning("%s: %d repeated row(s) ignored (one row per image and method)", path, dropped)
    return rows, clean and not dropped


def append_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows as JSON lines and push them to disk (a kill loses at most the batch)."""
    with path.open("a", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(finite(r)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class _SessionClock:
    """Keeps ``timing.json`` current after every batch (sessions of a resumed run add up, and a
    killed session still counts what it finished).

    ``metric_overhead_seconds`` is the metric stages' time (with ``classify``, the one plain
    forward per image that picks the explained classes) minus the time spent inside the model's
    forward passes they asked for: the work the metrics themselves add (masking, ranking,
    connected components, imputation...). ``explain`` is the time of the :func:`explain` calls.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.old = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, json.JSONDecodeError):
            self.old = {}
        self.start = time.perf_counter()

    def update(self, images: int, forward: CountingForward, timing: Timing) -> dict[str, Any]:
        old = self.old
        stages = dict(old.get("by_stage", {}))
        for key, value in timing.items():
            stages[key] = round(stages.get(key, 0.0) + value, 2)
        total = old.get("seconds_total", 0.0) + time.perf_counter() - self.start
        count = old.get("images", 0) + images
        fwd_seconds = old.get("metric_forward_seconds", 0.0) + forward.seconds
        metric_seconds = sum(v for k, v in stages.items() if k != "explain")
        result = {
            "seconds_total": round(total, 2),
            "images": count,
            "sessions": old.get("sessions", 0) + 1,
            "seconds_per_image": round(total / max(1, count), 3),
            "metric_forward_images": old.get("metric_forward_images", 0) + forward.images,
            "metric_forward_seconds": round(fwd_seconds, 2),
            "metric_overhead_seconds": round(max(0.0, metric_seconds - fwd_seconds), 2),
            "by_stage": stages,
        }
        write_json(self.path, result)
        return result


def _denormalise(x: Tensor, spec: Any) -> np.ndarray:
    mean = torch.tensor(spec.mean)[:, None, None]
    std = torch.tensor(spec.std)[:, None, None]
    img = (x.cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
    if img.shape[2] == 1:  # one-channel models: show grey as RGB
        img = np.repeat(img, 3, axis=2)
    return (img * 255).astype(np.uint8)


def collect_examples(
    model: nn.Module,
    spec: Any,
    samples: Sequence[Sample] | Iterable[Sample],
    rows: list[dict[str, Any]],
    config: EvalConfig,
    count: int = 4,
    max_pixels: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Best and worst images of each method for the report's example grids.

    Images are ranked per method by energy share (else IoU, else insertion AUC) at the first
    layer; the ``count`` worst and ``count`` best are explained again (one :func:`explain` call
    per method on at most ``2 * count`` images) so that a resumed run gets grids too. An image
    that cannot be read again is left out.

    Returns:
        method -> list of ``{"id", "score", "image" (H, W, 3 uint8), "map" (H, W), "boxes"}``,
        worst first.
    """
    from ..core.engine import explain

    data = _as_sequence(samples)
    index = {sid: i for i, sid in enumerate(sample_ids(data))}
    layer = config.layers[0]
    out: dict[str, list[dict[str, Any]]] = {}
    for m in config.methods:
        mine = [r for r in rows if r["method"] == m and r.get("id") in index]
        mine = [r for r in mine if r.get("asked_layer", layer) == layer] or mine
        metric = next(
            (k for k in ("energy", "iou", "insertion") if any(k in r for r in mine)), None
        )
        if metric is None or not mine:
            continue
        ranked = sorted(mine, key=lambda r: (float(r.get(metric, 0.0)), r["id"]))
        picked = ranked[:count] + [r for r in ranked[-count:] if r not in ranked[:count]]
        loaded = []
        for r in picked:
            sample = data[index[r["id"]]]
            try:
                loaded.append((r, sample, *to_input(sample, spec, max_pixels)))
            except ImageLoadError as err:
                log.warning("example %s left out: %s", r["id"], err.reason)
        if not loaded:
            continue
        x = torch.stack([t for _, _, t, _ in loaded])
        with naming_warnings([r["id"] for r, *_ in loaded]):
            res = explain(
                model,
                x.to(model_device(model)),
                m,
                layer=layer,
                targets=[int(r["target"]) for r, *_ in loaded],
                method_options=config.method_options,
                strict=True,
            )
        out[m] = [
            {
                "id": r["id"],
                "metric": metric,
                "score": float(r.get(metric, 0.0)),
                "target": r.get("target_name", ""),
                "image": _denormalise(x[i], spec),
                "map": res.maps[m][i].cpu().numpy(),
                "boxes": [
                    (o.box[0] * sx, o.box[1] * sy, o.box[2] * sx, o.box[3] * sy)
                    for o in sample.objects
                ],
            }
            for i, (r, sample, _, (sx, sy)) in enumerate(loaded)
        ]
    return out


def _sanity(
    model: nn.Module,
    spec: Any,
    data: Sequence[Sample],
    ids: list[str],
    config: EvalConfig,
    out: Path,
    max_pixels: int | None,
    failed_ids: set[str],
) -> dict[str, Any]:
    from .registry import metric_family

    path = out / "sanity.json"
    if path.exists():
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            log.warning("%s is unreadable; running the sanity check again", path)
    tensors: list[Tensor] = []
    used: list[str] = []
    for i, sid in enumerate(ids):
        if len(tensors) >= config.sanity_images:
            break
        if sid in failed_ids:
            continue
        try:
            tensors.append(to_input(data[i], spec, max_pixels)[0].to(model_device(model)))
        except ImageLoadError:
            continue
        used.append(sid)
    with naming_warnings(used):
        result: dict[str, Any] = metric_family("sanity").fn(model, tensors, config)
    if tensors:
        write_json(path, result)
    return result
