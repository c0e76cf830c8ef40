"""Run the evaluation protocols of the CAM papers on a model and a data set (``camscope evaluate``).

For every batch of images this module makes the :func:`camscope.explain` calls the metrics need
(top-5 maps for localization error, maps of the ground-truth class for the rest, and for
two-object images the other object's class), runs the selected metric families of
:mod:`camscope.metrics` and appends one JSON line per image and method/layer to
``results.jsonl``, so an interrupted run resumes where it stopped. :func:`summarise` turns the lines
into the leaderboard (means with 95% confidence intervals over images).

Which class is explained: for each object the accepted class (see :class:`camscope.datasets.
GroundTruth`) the model scores highest, as in TorchRay's pointing game and the Grad-CAM paper's
"ground-truth class" maps; top-1/top-5 localization error use the model's own top classes.

Example:
    >>> config = EvalConfig(methods=["gradcam", "layercam"], metrics=DEFAULT_METRICS)  # doctest: +SKIP
    >>> run_evaluation(model, spec, SyntheticBenchmark(50), config, "out/eval")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .datasets import Sample
from .errors import UsageError
from .fastpath import FastForward
from .metrics import DEFAULT_METRICS, FAMILIES
from .metrics import faithfulness as fm
from .metrics import localization as lm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricInfo:
    """A leaderboard column: its key, title, unit, better direction and family."""

    key: str
    title: str
    higher_is_better: bool
    family: str
    percent: bool = False


#: Every column the evaluation can produce, in leaderboard order.
COLUMNS: tuple[MetricInfo, ...] = (
    MetricInfo("loc_error_top1", "Top-1 loc. error %", False, "loc", True),
    MetricInfo("loc_error_top5", "Top-5 loc. error %", False, "loc", True),
    MetricInfo("gt_known_loc", "GT-known loc. %", True, "loc", True),
    MetricInfo("iou", "IoU", True, "loc"),
    MetricInfo("pointing", "Pointing %", True, "pointing", True),
    MetricInfo("pointing_top5", "Top-5 pointing (reject) %", True, "pointing", True),
    MetricInfo("energy", "Energy pointing %", True, "energy", True),
    MetricInfo("disc_pointing", "Discrimination pointing %", True, "discrimination", True),
    MetricInfo("disc_energy", "Discrimination energy %", True, "discrimination", True),
    MetricInfo("avg_drop", "Average Drop %", False, "drop"),
    MetricInfo("increase", "Increase in Confidence %", True, "drop", True),
    MetricInfo("win", "Win %", True, "drop", True),
    MetricInfo("deletion", "Deletion AUC", False, "deletion"),
    MetricInfo("insertion", "Insertion AUC", True, "insertion"),
    MetricInfo("road_morf", "ROAD MoRF", False, "road"),
    MetricInfo("road_lerf", "ROAD LeRF", True, "road"),
    MetricInfo("occlusion_rho", "Occlusion Spearman", True, "occlusion"),
)
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}


@dataclass
class EvalConfig:
    """What to evaluate and how (stored in ``config.json``; ``--resume`` requires the same).

    Attributes:
        methods: registered method names.
        layers: explained layers; each is evaluated separately (``["auto"]``: the automatic one).
        metrics: metric families (:data:`FAMILIES`).
        batch_size: images per explain call; forward passes of the metrics use ``forward_batch``.
        threshold: WSOL threshold (fraction of the map maximum).
        tolerance: pointing-game tolerance in pixels (at the model's input resolution).
        reject_threshold: top-5 pointing reject option (relative raw peak).
        steps: deletion/insertion steps; deletion_substrate / insertion_substrate: see
            :func:`camscope.metrics.faithfulness.substrate`.
        road_fractions: ROAD removal fractions.
        occlusion_patch / occlusion_stride: occlusion grid.
        sanity_images: images used for the (model-level) randomization test.
        data: a description of the data (for the report).
        method_options: ``method_options`` of every :func:`camscope.explain` call.
    """

    methods: list[str]
    layers: list[str] = field(default_factory=lambda: ["auto"])
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    batch_size: int = 8
    forward_batch: int = 64
    threshold: float = lm.DEFAULT_THRESHOLD
    tolerance: float = lm.DEFAULT_TOLERANCE
    reject_threshold: float = 0.5
    steps: int = 20
    deletion_substrate: str = "zero"
    insertion_substrate: str = "blur"
    road_fractions: list[float] = field(default_factory=lambda: list(fm.ROAD_FRACTIONS))
    occlusion_patch: int = 56
    occlusion_stride: int = 28
    sanity_images: int = 8
    data: str = ""
    model: str = ""
    method_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        unknown = [m for m in self.metrics if m not in FAMILIES]
        if unknown:
            raise UsageError(f"unknown metric(s) {unknown}; choose from {', '.join(FAMILIES)}")
        if not self.methods:
            raise UsageError("no method to evaluate")
        for sub in (self.deletion_substrate, self.insertion_substrate):
            if sub not in fm.SUBSTRATES:
                raise UsageError(
                    f"unknown substrate {sub!r}; choose from {', '.join(fm.SUBSTRATES)}"
                )
        if self.steps < 1 or self.batch_size < 1 or self.forward_batch < 1:
            raise UsageError("steps, batch size and forward batch must be >= 1")


class CountingForward:
    """Wraps a model as a ``forward`` for the metrics, counting images and time spent in it.

    The passes run on the fast eval-mode copy of :mod:`camscope.fastpath` (same function up to
    float rounding), in chunks of ``chunk`` images on CPU, where small batches run fastest.
    """

    def __init__(self, model: nn.Module, chunk: int = 8) -> None:
        device = next(iter(model.parameters()), torch.zeros(0)).device
        self.forward = FastForward(model, device)
        self.chunk = chunk if device.type == "cpu" else None
        self.images = 0
        self.seconds = 0.0

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        start = time.perf_counter()
        step = self.chunk or x.shape[0]
        out = torch.cat([self._scores(x[i : i + step]) for i in range(0, x.shape[0], step)])
        self.seconds += time.perf_counter() - start
        self.images += x.shape[0]
        return out

    def _scores(self, x: Tensor) -> Tensor:
        out = self.forward(x)
        if not isinstance(out, Tensor):
            from .targets import default_output_adapter

            out = default_output_adapter(out)
        return out


def to_input(
    sample: Sample,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bilinear",
) -> tuple[Tensor, tuple[float, float]]:
    """Load a sample's image, resize the whole image to ``input_size`` (no crop, so every box stays
    inside) and normalise. Returns the ``(3, H, W)`` input and the ``(sx, sy)`` box scale."""
    from PIL import Image

    image = sample.image
    if image is None:
        if sample.path is None:
            raise UsageError(f"sample {sample.id} has neither an image nor a path")
        from .errors import ImageLoadError

        try:
            with Image.open(sample.path) as im:
                image = im.convert("RGB")
        except OSError as err:
            raise ImageLoadError(str(sample.path), f"cannot decode ({err})") from None
    assert isinstance(image, Image.Image)
    image = image.convert("RGB")
    h, w = input_size
    resample = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST,
    }.get(interpolation, Image.Resampling.BILINEAR)
    scale = (w / image.width, h / image.height)
    arr = np.asarray(image.resize((w, h), resample), dtype=np.float32) / 255.0
    t = torch.from_numpy(arr).permute(2, 0, 1)
    t = (t - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    return t, scale


def _gt_tensors(
    samples: Sequence[Sample],
    scales: Sequence[tuple[float, float]],
    which: Callable[[int, int], bool] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Padded ``(B, M, 4)`` boxes (input pixels), ``(B, M, S)`` classes and ``(B, M)`` validity."""
    m = max(1, max(len(s.objects) for s in samples))
    s_max = max([1] + [len(o.class_ids) for s in samples for o in s.objects])
    boxes = torch.zeros(len(samples), m, 4)
    classes = torch.full((len(samples), m, s_max), -1, dtype=torch.long)
    valid = torch.zeros(len(samples), m, dtype=torch.bool)
    for i, (s, (sx, sy)) in enumerate(zip(samples, scales)):
        for j, o in enumerate(s.objects):
            if which is not None and not which(i, j):
                continue
            x0, y0, x1, y1 = o.box
            boxes[i, j] = torch.tensor([x0 * sx, y0 * sy, x1 * sx, y1 * sy])
            classes[i, j, : len(o.class_ids)] = torch.tensor(o.class_ids, dtype=torch.long)
            valid[i, j] = True
    return boxes, classes, valid


def _best_accepted(logits: Tensor, class_ids: Sequence[int]) -> int:
    ids = torch.tensor(list(class_ids), dtype=torch.long)
    return int(ids[logits[ids].argmax()])


@dataclass
class _Timing:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + value


def evaluate_batch(
    model: nn.Module,
    samples: Sequence[Sample],
    x: Tensor,
    scales: Sequence[tuple[float, float]],
    config: EvalConfig,
    layer: str,
    forward: CountingForward,
    class_names: Sequence[str] = (),
    timing: _Timing | None = None,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Evaluate every method on one batch at one layer.

    Returns the per-image rows (one per image and method) and the maps of the explained class
    (method -> ``(B, H, W)``, for the report's example grids).
    """
    from .engine import explain

    timing = timing or _Timing()
    fams = set(config.metrics)
    methods = list(config.methods)
    b = x.shape[0]
    gt_boxes, gt_classes, valid = _gt_tensors(samples, scales)
    rows: list[dict[str, Any]] = [
        {"id": s.id, "method": m, "layer": layer, "objects": len(s.objects)}
        for s in samples
        for m in methods
    ]

    def put(i: int, method: str, key: str, value: Any) -> None:
        rows[i * len(methods) + methods.index(method)][key] = value

    t0 = time.perf_counter()
    logits = forward(x).float()
    timing.add("classify", time.perf_counter() - t0)
    if logits.ndim != 2:
        raise UsageError(
            f"evaluation needs (batch, classes) model outputs; got {tuple(logits.shape)}"
        )
    # One explain call per batch: the model's top-5 classes, the explained class and, for
    # two-object images, the second object's class (the explained class again elsewhere), so
    # every method shares one forward/backward and Score-CAM one set of masked passes.
    k5 = min(5, logits.shape[1])
    top_classes = logits.topk(k5, dim=1).indices.cpu()
    first = [
        _best_accepted(logits[i].cpu(), s.objects[0].class_ids)
        if s.objects and s.objects[0].class_ids
        else int(top_classes[i, 0])
        for i, s in enumerate(samples)
    ]
    two = [i for i, s in enumerate(samples) if len(s.objects) >= 2 and s.objects[1].class_ids]
    second = list(first)
    for i in two:
        second[i] = _best_accepted(logits[i].cpu(), samples[i].objects[1].class_ids)
    asked = torch.cat([top_classes, torch.tensor([first, second]).T], dim=1)
    t0 = time.perf_counter()
    res = explain(
        model, x, methods, layer=layer, targets=asked, method_options=config.method_options
    )
    timing.add("explain", time.perf_counter() - t0)
    explained_layer = res.layer if isinstance(res.layer, str) else ",".join(res.layer)
    top_maps = {m: res.maps[m][:, :k5] for m in methods}
    top_raw = {m: res.raw[m][:, :k5] for m in methods}
    own_maps = {m: res.maps[m][:, k5] for m in methods}
    second_maps = {m: res.maps[m][:, k5 + 1] for m in methods}
    targets = torch.tensor(first, dtype=torch.long)
    probs = logits.softmax(1)
    for i, s in enumerate(samples):
        for m in methods:
            put(i, m, "layer", explained_layer)
            put(i, m, "target", first[i])
            put(
                i,
                m,
                "target_name",
                class_names[first[i]] if 0 <= first[i] < len(class_names) else str(first[i]),
            )
            put(i, m, "top1", int(top_classes[i, 0]))
            put(
                i,
                m,
                "top1_correct",
                any(int(top_classes[i, 0]) in o.class_ids for o in s.objects),
            )
            put(i, m, "p_target", float(probs[i, first[i]]) if first[i] < probs.shape[1] else None)
    # Boxes of the explained object only (first object) for the single-class metrics.
    own_boxes, _own_classes, own_valid = _gt_tensors(samples, scales, which=lambda i, j: j == 0)

    t0 = time.perf_counter()
    if "loc" in fams:
        for m in methods:
            maps_k = top_maps[m]
            k = maps_k.shape[1]
            boxes_k = lm.wsol_boxes(maps_k.flatten(0, 1), config.threshold).reshape(b, k, 4)
            ok = lm.localization_correct(boxes_k, top_classes, gt_boxes, gt_classes, valid)
            own_box = lm.wsol_boxes(own_maps[m], config.threshold)
            iou = lm.box_iou(own_box[:, None], own_boxes).masked_fill(~own_valid, 0).amax(1)
            for i in range(b):
                put(i, m, "loc_error_top1", 100.0 * (1 - float(ok[i, 0])))
                put(i, m, "loc_error_top5", 100.0 * (1 - float(ok[i, min(4, k - 1)])))
                put(i, m, "iou", float(iou[i]))
                put(i, m, "gt_known_loc", 100.0 * float(iou[i] >= lm.IOU_CORRECT))
                put(i, m, "box", [round(float(v), 1) for v in own_box[i]])
    timing.add("loc", time.perf_counter() - t0)

    t0 = time.perf_counter()
    if "pointing" in fams:
        for m in methods:
            hits = lm.pointing_hits(own_maps[m], own_boxes, own_valid, config.tolerance)
            for i in range(b):
                put(i, m, "pointing", 100.0 * float(hits[i]))
            if k5 > 1:
                raw = top_raw[m]
                peaks = (
                    raw.clamp(min=0).flatten(2).amax(2)
                    if raw.ndim == 4
                    else raw.abs().flatten(2).amax(2)
                )
                ok5 = lm.pointing_top5_reject(
                    top_maps[m],
                    peaks,
                    top_classes,
                    gt_boxes,
                    gt_classes,
                    valid,
                    config.tolerance,
                    config.reject_threshold,
                )
                for i in range(b):
                    put(i, m, "pointing_top5", 100.0 * float(ok5[i].float().mean()))
    timing.add("pointing", time.perf_counter() - t0)

    t0 = time.perf_counter()
    if "energy" in fams:
        for m in methods:
            share = lm.energy_pointing(own_maps[m], own_boxes, own_valid)
            for i in range(b):
                put(i, m, "energy", 100.0 * float(share[i]))
    timing.add("energy", time.perf_counter() - t0)

    if "discrimination" in fams and two:
        idx = torch.tensor(two)
        t0 = time.perf_counter()
        sub = [samples[i] for i in two]
        sub_scales = [scales[i] for i in two]
        a_boxes, _, a_valid = _gt_tensors(sub, sub_scales, which=lambda i, j: j == 0)
        b_boxes, _, b_valid = _gt_tensors(sub, sub_scales, which=lambda i, j: j == 1)
        for m in methods:
            hit_a, share_a = lm.discrimination(own_maps[m][idx], a_boxes, a_valid, b_boxes, b_valid)
            hit_b, share_b = lm.discrimination(
                second_maps[m][idx], b_boxes, b_valid, a_boxes, a_valid
            )
            for n, i in enumerate(two):
                put(i, m, "disc_pointing", 100.0 * (float(hit_a[n]) + float(hit_b[n])) / 2)
                put(i, m, "disc_energy", 100.0 * (float(share_a[n]) + float(share_b[n])) / 2)
        timing.add("discrimination", time.perf_counter() - t0)

    black = ((0.0 - torch.tensor(mean)) / torch.tensor(std)).view(1, 3, 1, 1).to(x.device)
    p_full = probs.gather(1, targets[:, None].to(probs.device))[:, 0]
    if "drop" in fams:
        t0 = time.perf_counter()
        for m in methods:
            p_map = fm.class_probability(
                forward, fm.explanation_input(x, own_maps[m], black), targets, config.forward_batch
            )
            drop = fm.average_drop(p_full, p_map)
            signed = fm.signed_drop(p_full, p_map)
            inc = fm.increase_in_confidence(p_full, p_map)
            for i in range(b):
                put(i, m, "avg_drop", float(drop[i]))
                put(i, m, "signed_drop", float(signed[i]))
                put(i, m, "increase", 100.0 * float(inc[i]))
        timing.add("drop", time.perf_counter() - t0)
    for mode, sub_kind in (
        ("deletion", config.deletion_substrate),
        ("insertion", config.insertion_substrate),
    ):
        if mode not in fams:
            continue
        t0 = time.perf_counter()
        for m in methods:
            curves = fm.deletion_insertion(
                forward,
                x,
                own_maps[m],
                targets,
                mode=mode,
                steps=config.steps,
                substrate_kind=sub_kind,
                black=black,
                batch_size=config.forward_batch,
            )
            areas = fm.auc(curves)
            for i in range(b):
                put(i, m, mode, float(areas[i]))
                put(i, m, f"{mode}_curve", [round(float(v), 5) for v in curves[i]])
        timing.add(mode, time.perf_counter() - t0)
    if "road" in fams:
        t0 = time.perf_counter()
        for m in methods:
            for order in ("morf", "lerf"):
                curve = fm.road(
                    forward,
                    x,
                    own_maps[m],
                    targets,
                    order=order,
                    fractions=tuple(config.road_fractions),
                    batch_size=config.forward_batch,
                )
                for i in range(b):
                    put(i, m, f"road_{order}", float(curve[i].mean()))
        timing.add("road", time.perf_counter() - t0)
    if "occlusion" in fams:
        t0 = time.perf_counter()
        occ = fm.occlusion_map(
            forward,
            x,
            targets,
            config.occlusion_patch,
            config.occlusion_stride,
            baseline=0.0,
            batch_size=config.forward_batch,
        )
        for m in methods:
            rho = fm.occlusion_spearman(
                own_maps[m], occ, config.occlusion_patch, config.occlusion_stride
            )
            for i in range(b):
                put(i, m, "occlusion_rho", float(rho[i]))
        timing.add("occlusion", time.perf_counter() - t0)
    return rows, own_maps


# ---------------------------------------------------------------------------------------------
# The run: batches, resume, sanity, summary


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
        samples: the data (:func:`camscope.datasets.load_dataset` or the built-in benchmark).
        config: what to run.
        out_dir: output folder; ``results.jsonl`` gets one line per image and method/layer, written
            after every batch.
        resume: keep the rows already in ``out_dir`` and skip their images (the stored config must
            match); without it an existing ``results.jsonl`` is an error.
        progress: show a progress bar with ETA on stderr.
        examples: images kept per method for the report's example grids (best and worst).

    Returns:
        :class:`RunResult` with the rows and :func:`summarise`'s summary (the report is written by
        :func:`camscope.report.write_report`).
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
    timing = _Timing()
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
    path: Path, elapsed: float, images: int, forward: CountingForward, timing: _Timing
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
    from .engine import explain

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
    from .layers import resolve_layers
    from .metrics.sanity import FAIL_SIMILARITY, cascading_randomization

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


def _ci(values: list[float]) -> tuple[float, float, int]:
    """Mean and half-width of a normal-approximation 95% confidence interval (1.96 s / sqrt(n))."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan, 1
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, 1.96 * math.sqrt(var / n), n


def summarise(rows: list[dict[str, Any]], config: EvalConfig) -> dict[str, Any]:
    """Aggregate rows into the leaderboard: one entry per method (and layer when several) with
    ``mean``, ``ci95`` (half-width) and ``n`` for each metric, plus mean deletion/insertion curves.

    Win %: per image, among the evaluated method/layer entries, the share of the lowest signed drop
    (ties split)."""
    several = len({r["layer"] for r in rows}) > 1

    def key(r: dict[str, Any]) -> str:
        return f"{r['method']}@{r['layer']}" if several else r["method"]

    entries = sorted({key(r) for r in rows}, key=lambda k: [key(r) for r in rows].index(k))
    # Win shares per image.
    by_image: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get("signed_drop") is not None:
            by_image.setdefault(r["id"], {})[key(r)] = r["signed_drop"]
    wins: dict[str, list[float]] = {e: [] for e in entries}
    for drops in by_image.values():
        names = list(drops)
        shares = fm.win_share({n: torch.tensor([drops[n]]) for n in names})
        for n in names:
            wins[n].append(100.0 * float(shares[n][0]))
    board: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for e in entries:
        mine = [r for r in rows if key(r) == e]
        stats: dict[str, Any] = {}
        for col in COLUMNS:
            vals = (
                wins[e]
                if col.key == "win"
                else [float(r[col.key]) for r in mine if r.get(col.key) is not None]
            )
            if not vals:
                continue
            mean, ci, count = _ci(vals)
            stats[col.key] = {"mean": mean, "ci95": ci, "n": count}
        board[e] = stats
        for mode in ("deletion", "insertion"):
            cs = [r[f"{mode}_curve"] for r in mine if r.get(f"{mode}_curve")]
            if cs:
                curves.setdefault(e, {})[mode] = np.mean(np.array(cs), axis=0).round(5).tolist()
    columns = [c.key for c in COLUMNS if any(c.key in board[e] for e in entries)]
    images = len({r["id"] for r in rows})
    top1 = (
        [bool(r.get("top1_correct")) for r in rows if r["method"] == rows[0]["method"]]
        if rows
        else []
    )
    return {
        "leaderboard": board,
        "columns": columns,
        "column_info": {k: asdict(COLUMN_BY_KEY[k]) for k in columns},
        "curves": curves,
        "images": images,
        "top1_accuracy": 100.0 * sum(top1) / len(top1) if top1 else None,
    }


def write_csv(path: Path, summary: dict[str, Any]) -> None:
    """``results.csv``: one row per method (/layer), columns ``<metric>`` and ``<metric>_ci95``."""
    import csv

    cols = summary["columns"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", *[x for c in cols for x in (c, f"{c}_ci95")], "n"])
        for name, stats in summary["leaderboard"].items():
            row: list[Any] = [name]
            n = 0
            for c in cols:
                s = stats.get(c)
                row += (
                    [
                        f"{s['mean']:.4f}",
                        "" if s is None or math.isnan(s["ci95"]) else f"{s['ci95']:.4f}",
                    ]
                    if s
                    else ["", ""]
                )
                n = max(n, s["n"]) if s else n
            w.writerow([*row, n])
