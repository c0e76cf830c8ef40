"""Run the evaluation protocols of the CAM papers on a model and a data set (``camscope evaluate``).

For every batch of images this module makes the :func:`camscope.explain` calls the metrics need
(top-5 maps for localization error, maps of the ground-truth class for the rest, and for
two-object images the other object's class), runs the selected metric families of
:mod:`camscope.metrics` and appends one JSON line per image and method/layer to
``results.jsonl``, so an interrupted run resumes where it stopped. :func:`summarise` turns the lines
into the leaderboard (means with 95% confidence intervals over images).

Which class is explained: for each object the accepted class (see
:class:`camscope.data.annotations.GroundTruth`) the model scores highest, as in TorchRay's pointing game and the Grad-CAM paper's
"ground-truth class" maps; top-1/top-5 localization error use the model's own top classes.

Example:
    >>> config = EvalConfig(methods=["gradcam", "layercam"], metrics=DEFAULT_METRICS)  # doctest: +SKIP
    >>> run_evaluation(model, spec, SyntheticBenchmark(50), config, "out/eval")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.annotations import Sample
from ..errors import UsageError
from .config import EvalConfig
from .scoring import CountingForward, Timing, evaluate_batch, to_input
from .summary import summarise, write_csv

log = logging.getLogger(__name__)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl`` (a truncated last line from an interrupted run is ignored)."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: skipping a truncated line (interrupted run)", path)
    return rows


@dataclass
class RunResult:
    """What :func:`run_evaluation` produced."""

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    examples: dict[str, Any]


def run_evaluation(
    model: nn.Module,
    spec: Any,
    samples: Sequence[Sample] | Iterable[Sample],
    config: EvalConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    examples: int = 4,
) -> RunResult:
    """Evaluate ``config.methods`` on ``samples`` and write ``results.jsonl`` / ``config.json``.

    Args:
        model: the classifier (in eval mode; never modified).
        spec: a :class:`camscope.models.ModelSpec` (input size, normalisation, class names).
        samples: the data (:func:`camscope.data.annotations.load_dataset` or the built-in benchmark).
        config: what to run.
        out_dir: output folder; ``results.jsonl`` gets one line per image and method/layer, written
            after every batch.
        resume: keep the rows already in ``out_dir`` and skip their images (the stored config must
            match); without it an existing ``results.jsonl`` is an error.
        progress: show a progress bar with ETA on stderr.
        examples: images kept per method for the report's example grids (best and worst).

    Returns:
        :class:`RunResult` with the rows and :func:`summarise`'s summary (the report is written by
        :func:`camscope.evaluation.report.write_report`).
    """
    config.validate()
    samples = list(samples)
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise UsageError("sample ids must be unique (two images share a name)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "results.jsonl"
    cfg_path = out / "config.json"
    cfg = asdict(config)
    if jsonl.exists() and jsonl.stat().st_size > 0:
        if not resume:
            raise UsageError(
                f"{jsonl} exists; pass --resume to continue that run or choose another --out"
            )
        stored = json.loads(cfg_path.read_text()) if cfg_path.exists() else None
        if stored is not None and stored != cfg:
            diff = sorted(k for k in cfg if stored.get(k) != cfg[k])
            raise UsageError(
                f"cannot resume {out}: the settings differ from the stored run ({', '.join(diff)})"
            )
    cfg_path.write_text(json.dumps(cfg, indent=2))
    rows = read_rows(jsonl) if resume else []
    expected = len(config.methods) * len(config.layers)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["id"]] = counts.get(r["id"], 0) + 1
    done = {k for k, v in counts.items() if v >= expected}
    rows = [r for r in rows if r["id"] in done]
    if resume:  # rewrite without partial images so they are evaluated again cleanly
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    todo = [s for s in samples if s.id not in done]
    forward = CountingForward(model)
    timing = Timing()
    start = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", desc="evaluate", dynamic_ncols=True, leave=True)
    class_names = list(getattr(spec, "class_names", []) or [])
    device = next(iter(model.parameters()), torch.zeros(0)).device
    try:
        for begin in range(0, len(todo), config.batch_size):
            batch = todo[begin : begin + config.batch_size]
            tensors, scales = zip(
                *(
                    to_input(s, tuple(spec.input_size), spec.mean, spec.std, spec.interpolation)
                    for s in batch
                )
            )
            x = torch.stack(list(tensors)).to(device)
            new_rows: list[dict[str, Any]] = []
            for layer in config.layers:
                layer_rows, _maps = evaluate_batch(
                    model,
                    batch,
                    x,
                    list(scales),
                    config,
                    layer,
                    forward,
                    class_names,
                    timing,
                    spec.mean,
                    spec.std,
                )
                new_rows.extend(layer_rows)
            with jsonl.open("a") as fh:
                for r in new_rows:
                    fh.write(json.dumps(r) + "\n")
            rows.extend(new_rows)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - start
    sanity = _sanity(model, spec, samples, config, out) if "sanity" in config.metrics else None
    summary = summarise(rows, config)
    summary["sanity"] = sanity
    summary["timing"] = _accumulate_timing(out / "timing.json", elapsed, len(todo), forward, timing)
    (out / "results.json").write_text(json.dumps({"config": cfg, **summary}, indent=2))
    write_csv(out / "results.csv", summary)
    shown = collect_examples(model, spec, samples, rows, config, examples) if examples else {}
    return RunResult(out, rows, summary, shown)


def _accumulate_timing(
    path: Path, elapsed: float, images: int, forward: CountingForward, timing: Timing
) -> dict[str, Any]:
    """Add this session's cost to ``timing.json`` (sessions of a resumed run add up).

    ``metric_overhead_seconds`` is the metric stages' time (with ``classify``, the one plain
    forward per image that picks the explained classes) minus the time spent inside the model's
    forward passes they asked for: the work the metrics themselves add (masking, ranking, connected
    components, imputation...). ``explain`` is the time of the :func:`explain` calls.
    """
    old = json.loads(path.read_text()) if path.exists() else {}
    stages = dict(old.get("by_stage", {}))
    for key, value in timing.seconds.items():
        stages[key] = round(stages.get(key, 0.0) + value, 2)
    total = old.get("seconds_total", 0.0) + elapsed
    count = old.get("images", 0) + images
    fwd_images = old.get("metric_forward_images", 0) + forward.images
    fwd_seconds = old.get("metric_forward_seconds", 0.0) + forward.seconds
    metric_seconds = sum(v for k, v in stages.items() if k != "explain")
    result = {
        "seconds_total": round(total, 2),
        "images": count,
        "sessions": old.get("sessions", 0) + 1,
        "seconds_per_image": round(total / max(1, count), 3),
        "metric_forward_images": fwd_images,
        "metric_forward_seconds": round(fwd_seconds, 2),
        "metric_overhead_seconds": round(max(0.0, metric_seconds - fwd_seconds), 2),
        "by_stage": stages,
    }
    path.write_text(json.dumps(result, indent=2))
    return result


def _denormalise(x: Tensor, spec: Any) -> np.ndarray:
    mean = torch.tensor(spec.mean)[:, None, None]
    std = torch.tensor(spec.std)[:, None, None]
    img = (x.cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
    return (img * 255).astype(np.uint8)


def collect_examples(
    model: nn.Module,
    spec: Any,
    samples: Sequence[Sample] | Iterable[Sample],
    rows: list[dict[str, Any]],
    config: EvalConfig,
    count: int = 4,
) -> dict[str, list[dict[str, Any]]]:
    """Best and worst images of each method for the report's example grids.

    Images are ranked per method by energy share (else IoU, else insertion AUC) at the first
    layer; the ``count`` worst and ``count`` best are explained again (one :func:`explain` call
    per method on at most ``2 * count`` images) so that a resumed run gets grids too.

    Returns:
        method -> list of ``{"id", "score", "image" (H, W, 3 uint8), "map" (H, W), "boxes"}``,
        worst first.
    """
    from ..core.engine import explain

    by_id = {s.id: s for s in samples}
    layer = config.layers[0]
    out: dict[str, list[dict[str, Any]]] = {}
    for m in config.methods:
        mine = [r for r in rows if r["method"] == m and r.get("id") in by_id]
        if layer != "auto":
            mine = [r for r in mine if r["layer"] == layer] or mine
        metric = next(
            (k for k in ("energy", "iou", "insertion") if any(k in r for r in mine)), None
        )
        if metric is None or not mine:
            continue
        ranked = sorted(mine, key=lambda r: (float(r.get(metric, 0.0)), r["id"]))
        picked = ranked[:count] + [r for r in ranked[-count:] if r not in ranked[:count]]
        chosen = [by_id[r["id"]] for r in picked]
        inputs = [
            to_input(s, tuple(spec.input_size), spec.mean, spec.std, spec.interpolation)
            for s in chosen
        ]
        x = torch.stack([t for t, _ in inputs])
        device = next(iter(model.parameters()), torch.zeros(0)).device
        res = explain(
            model,
            x.to(device),
            m,
            layer=layer,
            targets=[int(r["target"]) for r in picked],
            method_options=config.method_options,
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
                    for o in chosen[i].objects
                ],
            }
            for i, (r, (_, (sx, sy))) in enumerate(zip(picked, inputs))
        ]
    return out


def _sanity(
    model: nn.Module,
    spec: Any,
    samples: Sequence[Sample] | Iterable[Sample],
    config: EvalConfig,
    out: Path,
) -> dict[str, Any]:
    from ..core.layers import resolve_layers
    from ..metrics.sanity import FAIL_SIMILARITY, cascading_randomization

    path = out / "sanity.json"
    if path.exists():
        return json.loads(path.read_text())
    chosen = []
    for s in samples:
        chosen.append(s)
        if len(chosen) >= config.sanity_images:
            break
    device = next(iter(model.parameters()), torch.zeros(0)).device
    x = torch.stack(
        [
            to_input(s, tuple(spec.input_size), spec.mean, spec.std, spec.interpolation)[0]
            for s in chosen
        ]
    ).to(device)
    result: dict[str, Any] = {"images": len(chosen), "fail_below": FAIL_SIMILARITY, "layers": {}}
    for layer in config.layers:
        name = resolve_layers(model, layer, x[:1])[0][0] if layer == "auto" else layer
        res = cascading_randomization(
            model, x, config.methods, layer=name, method_options=config.method_options
        )
        result["layers"][name] = {
            "steps": res.steps,
            "spearman": res.spearman,
            "ssim": res.ssim,
            "passed": {m: res.passed(m) for m in config.methods},
        }
    path.write_text(json.dumps(result, indent=2))
    return result
