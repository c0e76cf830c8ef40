"""One batch of an evaluation: the explain calls and every selected metric on their maps.

:func:`evaluate_batch` makes one :func:`camscope.explain` call per batch (top-5, explained and
second-object classes), then runs the metric families of :mod:`camscope.metrics` and returns one
row per image and method. Forward passes of the metrics go through :class:`CountingForward`.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..data.annotations import Sample
from ..errors import ImageLoadError, UsageError
from ..metrics import faithfulness as fm
from ..metrics import localization as lm
from ..metrics import robustness as rm
from ..perturbation.fastpath import FastForward
from .config import EvalConfig


class CountingForward:
    """Wraps a model as a ``forward`` for the metrics, counting images and time spent in it.

    The passes run on ``fast``, a :class:`~camscope.perturbation.fastpath.FastForward` of
    ``model`` that the caller owns (:func:`~camscope.evaluation.run.run_evaluation` makes one per
    run: an eval-mode copy, on CPU its TorchScript graph; the same function up to float
    rounding, checked exactly against the model at every call), or, without one, on ``model``
    itself in the mode it is in; in chunks of ``chunk`` images on CPU, where small batches run
    fastest.
    """

    def __init__(
        self, model: nn.Module, chunk: int = 8, *, fast: FastForward | None = None
    ) -> None:
        device = next(iter(model.parameters()), torch.zeros(0)).device
        if fast is not None and fast.model is not model:
            raise UsageError("CountingForward: `fast` is a FastForward of another model")
        self.forward = fast or FastForward(model, device, optimize=False)
        self.chunk = chunk if device.type == "cpu" else None
        self.images = 0
        self.seconds = 0.0

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        start = time.perf_counter()
        step = self.chunk or x.shape[0]
        with self.forward.use() as run:  # the copy is checked against the model once per call
            out = torch.cat([_scores(run(x[i : i + step])) for i in range(0, x.shape[0], step)])
        self.seconds += time.perf_counter() - start
        self.images += x.shape[0]
        return out


def _scores(out: Any) -> Tensor:
    if not isinstance(out, Tensor):
        from ..core.targets import default_output_adapter

        out = default_output_adapter(out)
    return out


def to_input(
    sample: Sample, spec: Any, max_pixels: int | None = None
) -> tuple[Tensor, tuple[float, float]]:
    """A sample's model input through the same path as ``camscope explain``.

    The image is read with :func:`camscope.io.load_image` (pixel cap ``max_pixels``, EXIF
    orientation, grey / 16-bit / alpha conversions, clear errors) unless the sample holds it in
    memory, and turned into the model input by :func:`camscope.io.preprocess` (the whole image
    resized to the model's input size, no crop, so every box stays inside).

    Returns:
        The ``(C, H, W)`` input and the ``(sx, sy)`` factors from image to input pixels.

    Raises:
        ImageLoadError: the image cannot be read, or one of its boxes lies wholly outside it.
    """
    from PIL import Image

    from .. import io

    image = sample.image
    source = str(sample.path) if sample.path is not None else sample.id
    if image is None:
        if sample.path is None:
            raise UsageError(f"sample {sample.id} has neither an image nor a path")
        image = io.load_image(sample.path, max_pixels=max_pixels or io.DEFAULT_MAX_PIXELS)
    if not isinstance(image, Image.Image):
        raise UsageError(
            f"sample {sample.id}: image must be a PIL image; got {type(image).__name__}"
        )
    width, height = image.size
    for o in sample.objects:
        x0, y0, x1, y1 = o.box
        if x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0:
            raise ImageLoadError(
                source,
                f"the box {o.box} of {o.label!r} lies outside the {width} x {height} image; "
                "fix the annotation",
            )
    x = io.preprocess(image, spec)[0]
    h_in, w_in = (int(v) for v in spec.input_size)
    return x, (w_in / width, h_in / height)


def _gt_tensors(
    samples: Sequence[Sample],
    scales: Sequence[tuple[float, float]],
    which: Callable[[int, int], bool] | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Padded ``(B, M, 4)`` boxes (input pixels, clipped to ``size = (H, W)`` when given),
    ``(B, M, S)`` classes and ``(B, M)`` validity."""
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
            if size is not None:  # boxes of annotations without an image size are clipped here
                boxes[i, j, 0::2] = boxes[i, j, 0::2].clamp(0, size[1])
                boxes[i, j, 1::2] = boxes[i, j, 1::2].clamp(0, size[0])
            classes[i, j, : len(o.class_ids)] = torch.tensor(o.class_ids, dtype=torch.long)
            valid[i, j] = True
    return boxes, classes, valid


def _best_accepted(logits: Tensor, class_ids: Sequence[int]) -> int:
    ids = torch.tensor(list(class_ids), dtype=torch.long)
    return int(ids[logits[ids].argmax()])


@dataclass
class Timing:
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
    timing: Timing | None = None,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Evaluate every method on one batch at one layer.

    Returns the per-image rows (one per image and method) and the maps of the explained class
    (method -> ``(B, H, W)``, for the report's example grids).
    """
    from ..core.engine import explain

    timing = timing or Timing()
    fams = set(config.metrics)
    methods = list(config.methods)
    b = x.shape[0]
    size = (int(x.shape[-2]), int(x.shape[-1]))
    gt_boxes, gt_classes, valid = _gt_tensors(samples, scales, size=size)
    rows: list[dict[str, Any]] = [
        {"id": s.id, "method": m, "layer": layer, "asked_layer": layer, "objects": len(s.objects)}
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
    # strict: every metric below reads every method's maps; a method that cannot run at this
    # layer is a usage error for the whole run, not a silent hole in the leaderboard.
    res = explain(
        model,
        x,
        methods,
        layer=layer,
        targets=asked,
        method_options=config.method_options,
        strict=True,
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
    own_boxes, _own_classes, own_valid = _gt_tensors(
        samples, scales, which=lambda i, j: j == 0, size=size
    )

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
        a_boxes, _, a_valid = _gt_tensors(sub, sub_scales, lambda i, j: j == 0, size)
        b_boxes, _, b_valid = _gt_tensors(sub, sub_scales, lambda i, j: j == 1, size)
        for m in methods:
            hit_a, share_a = lm.discrimination(own_maps[m][idx], a_boxes, a_valid, b_boxes, b_valid)
            hit_b, share_b = lm.discrimination(
                second_maps[m][idx], b_boxes, b_valid, a_boxes, a_valid
            )
            for n, i in enumerate(two):
                put(i, m, "disc_pointing", 100.0 * (float(hit_a[n]) + float(hit_b[n])) / 2)
                put(i, m, "disc_energy", 100.0 * (float(share_a[n]) + float(share_b[n])) / 2)
        timing.add("discrimination", time.perf_counter() - t0)

    black = ((0.0 - torch.tensor(mean)) / torch.tensor(std)).view(1, -1, 1, 1).to(x.device)
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
    if "robustness" in fams:
        t0, noisy_explain = time.perf_counter(), Timing()

        def explain_noisy(inputs: Tensor, classes: Tensor) -> tuple[dict[str, Tensor], Tensor]:
            began = time.perf_counter()
            r = explain(
                model,
                inputs,
                methods,
                layer,
                classes,
                method_options=config.method_options,
                strict=True,  # as the first call: every method's maps are compared
            )
            noisy_explain.add("explain", time.perf_counter() - began)
            if r.logits is None:
                raise UsageError("the robustness metrics need (batch, classes) model outputs")
            return r.maps, r.logits.argmax(1)

        # Noise on the [0, 1] pixel scale, seeded per image id (resumable, batch-independent).
        seeds = [zlib.crc32(s.id.encode()) for s in samples]
        pixel_noise = rm.uniform_noise(
            x.shape[1:], config.robustness_samples, config.robustness_radius, seeds
        )
        deltas = pixel_noise / torch.tensor(std, dtype=torch.float32).view(1, 1, -1, 1, 1)
        found = rm.robustness_scores(
            explain_noisy, x, own_maps, targets, top_classes[:, 0], deltas, config.batch_size
        )
        for m in methods:
            for key, values in found[m].items():
                scale = 100.0 if key in ("topk_intersection", "kept") else 1.0
                for i in range(b):
                    v = float(values[i])
                    put(i, m, key, None if math.isnan(v) else scale * v)
        seconds = noisy_explain.seconds.get("explain", 0.0)
        timing.add("explain", seconds)
        timing.add("robustness", time.perf_counter() - t0 - seconds)
    return rows, own_maps
