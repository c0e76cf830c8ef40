"""One batch of an evaluation: its explain call and every selected metric family.

:func:`evaluate_batch` classifies the batch (:func:`camscope.core.prediction.predict`), makes one
:func:`camscope.explain` call (top-5, explained and second-object classes) into a
:class:`~camscope.evaluation.context.BatchContext`, runs the selected families of
:mod:`camscope.evaluation.registry` on it and returns one row per image and method. Forward
passes of the metrics go through :class:`CountingForward`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..core.prediction import default_output_adapter, predict
from ..data.dataset import LoadOptions, Sample
from ..data.walk import naming_warnings
from ..errors import UsageError
from ..models.spec import model_device
from ..perturbation.fastpath import FastForward
from .config import EvalConfig
from .context import BatchContext
from .registry import metric_families


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
        device = model_device(model)
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
            out = torch.cat(
                [default_output_adapter(run(x[i : i + step])) for i in range(0, x.shape[0], step)]
            )
        self.seconds += time.perf_counter() - start
        self.images += x.shape[0]
        return out


def to_input(
    sample: Sample, spec: Any, max_pixels: int | None = None
) -> tuple[Tensor, tuple[float, float]]:
    """A sample's ``(C, H, W)`` model input and the ``(sx, sy)`` factors from image to input
    pixels, through :meth:`camscope.data.dataset.Sample.prepare` (the path of every command).

    Raises:
        ImageLoadError: the image cannot be read, or one of its boxes lies wholly outside it.
    """
    prepared = sample.prepare(spec, LoadOptions(max_pixels))
    return prepared.x[0], prepared.scale


#: Seconds per stage (``classify``, ``explain``, each family's name), summed over batches.
Timing = defaultdict[str, float]


def evaluate_batch(
    model: nn.Module,
    spec: Any,
    samples: Sequence[Sample],
    x: Tensor,
    scales: Sequence[tuple[float, float]],
    config: EvalConfig,
    layer: str,
    forward: CountingForward,
    timing: Timing | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Evaluate every method on one batch at one layer.

    ``spec`` (a :class:`camscope.models.ModelSpec`) gives the class names and the normalisation
    (the black substrate, the noise scale). The model's prediction is
    :func:`camscope.core.prediction.predict`'s (a single-logit model is a binary classifier).
    Each selected family of :mod:`camscope.evaluation.registry` is timed under its name.

    Returns the per-image rows (one per image and method) and the maps of the explained class
    (method -> ``(B, H, W)``, for the report's example grids).
    """
    timing = defaultdict(float) if timing is None else timing
    ctx = _explained(model, spec, samples, x, scales, config, layer, forward, timing)
    rows = _base_rows(ctx, layer, list(getattr(spec, "class_names", None) or []))
    for family in metric_families():
        if family.scope != "image" or family.name not in config.metrics:
            continue
        t0, explained = time.perf_counter(), timing.get("explain", 0.0)
        scores = family.fn(ctx)
        for m, per_image in scores.items():
            for i, values in enumerate(per_image):
                rows[i * len(ctx.methods) + ctx.methods.index(m)].update(values)
        inner = timing.get("explain", 0.0) - explained  # explain calls it made itself
        timing[family.name] += time.perf_counter() - t0 - inner
    return rows, ctx.maps


def _explained(
    model: nn.Module,
    spec: Any,
    samples: Sequence[Sample],
    x: Tensor,
    scales: Sequence[tuple[float, float]],
    config: EvalConfig,
    layer: str,
    forward: CountingForward,
    timing: Timing,
) -> BatchContext:
    """The batch classified and explained: one explain call for the model's top-5 classes, the
    explained class and, for two-object images, the second object's class (the explained class
    again elsewhere), so every method shares one forward/backward and Score-CAM one set of
    masked passes."""
    from ..core.engine import explain
    from ..core.result import Explanation

    t0 = time.perf_counter()
    prediction = predict(forward(x), multilabel=config.multilabel)
    timing["classify"] += time.perf_counter() - t0
    n = prediction.num_classes
    for s in samples:
        bad = sorted({c for o in s.objects for c in o.class_ids if not 0 <= c < n})
        if bad:
            raise UsageError(
                f"{s.id}: class(es) {bad} are not classes of this model ({n} classes); map the "
                "data's labels onto its classes (--class-map) or evaluate a model that has them"
            )
    methods = list(config.methods)
    _, top_classes = prediction.top(5)
    k5 = top_classes.shape[1]

    def best(i: int, j: int, otherwise: int) -> int:
        """The accepted class of image i's object j the model scores highest, else otherwise."""
        objects = samples[i].objects
        if len(objects) > j and objects[j].class_ids:
            return prediction.best_of(i, objects[j].class_ids)
        return otherwise

    first = [best(i, 0, int(top_classes[i, 0])) for i in range(len(samples))]
    second = [best(i, 1, first[i]) for i in range(len(samples))]
    asked = torch.cat([top_classes.cpu(), torch.tensor([first, second]).T], dim=1)

    def timed(inputs: Tensor, classes: Tensor) -> Explanation:
        began = time.perf_counter()
        # strict: every metric reads every method's maps; a method that cannot run at this
        # layer is a usage error for the whole run, not a silent hole in the leaderboard.
        res = explain(
            model, inputs, methods, layer, classes, method_options=config.method_options,
            strict=True, multilabel=config.multilabel,
        )  # fmt: skip
        timing["explain"] += time.perf_counter() - began
        return res

    def explain_again(inputs: Tensor, classes: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        res = timed(inputs, classes)
        if res.prediction is None:
            raise UsageError("evaluation needs (batch, classes) model outputs")
        return res.maps, res.prediction.classes

    with naming_warnings(samples):
        res = timed(x, asked)
    return BatchContext(
        samples=samples,
        scales=scales,
        x=x,
        methods=methods,
        config=config,
        prediction=prediction,
        top_classes=top_classes.to(x.device),
        targets=torch.tensor(first, dtype=torch.long, device=x.device),
        maps={m: res.maps[m][:, k5] for m in methods},
        top_maps={m: res.maps[m][:, :k5] for m in methods},
        top_raw={m: res.raw[m][:, :k5] for m in methods},
        second_maps={m: res.maps[m][:, k5 + 1] for m in methods},
        forward=forward,
        explain=explain_again,
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        layer=",".join(res.layer_names),
    )


def _base_rows(ctx: BatchContext, layer: str, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per image and method: what the model said and which class was explained."""
    rows = []
    for i, s in enumerate(ctx.samples):
        target, top1 = int(ctx.targets[i]), int(ctx.top_classes[i, 0])
        name = class_names[target] if 0 <= target < len(class_names) else str(target)
        p = ctx.prediction.probability(i, target) if target < ctx.prediction.num_classes else None
        for m in ctx.methods:
            rows.append({
                "id": s.id, "method": m, "layer": ctx.layer, "asked_layer": layer,
                "objects": len(s.objects), "target": target, "target_name": name, "top1": top1,
                "top1_correct": any(top1 in o.class_ids for o in s.objects), "p_target": p,
            })  # fmt: skip
    return rows
