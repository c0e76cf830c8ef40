"""What ``camscope explain`` draws for one image: a plan of small arrays, made from an
:class:`~camscope.core.result.Explanation` in the main thread and drawn by :mod:`.files` in worker
threads.

A plan holds the display picture (the image shrunk to ``max_side``), each overlay's map at the
model's input size (it is resized to the display size only when its file is drawn, one at a time),
guided pictures, the ``.npy`` maps and the grid's rows. Titles say what each picture shows:

* the explained class and its probability head each grid row (``target: tabby, p = 0.77``;
  ``p = 0.62 (sigmoid)`` for single-logit and multi-label heads;
  ``top-2: ...`` for top-k targets, whose input is drawn once, not once per class);
* class-agnostic methods (Eigen-CAM) are titled as such and drawn once for top-k targets;
  the counterfactual map is titled as evidence *against* the class;
* with top-k targets the maps of one method share one scale across the classes by default
  (``class_scale="shared"``): each class's map (ReLU'd, at input size; per layer, then averaged)
  is divided by the largest value over the image's classes, so a class with little evidence looks
  dim instead of as hot as the top class. ``"own"`` draws each map min-max normalised on its own,
  as :func:`camscope.explain` returns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from ..core.result import Explanation
    from ..data.dataset import Sample
    from ..models import ModelSpec
    from ..viz import Box, Panel

IMAGE_FORMATS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}
NPY_SIZES = ("layer", "model", "image")  # the .npy maps' resolution
CLASS_SCALES = ("shared", "own")  # top-k grids: one scale per method, or each map its own
_AGAINST = {"counterfactual"}  # methods whose map is the evidence against the class


@dataclass(frozen=True)
class PictureOptions:
    """What to draw and write for each image."""

    colormap: str = "inferno"
    alpha: float = 0.5
    max_side: int | None = 1024  # longer side of overlay files; None or 0: the image's own size
    grid: bool = True
    overlays: bool = True
    image_format: str = "png"
    save_npy: bool = False
    npy_size: str = "model"
    class_scale: str = "shared"
    max_columns: int = 6

    def __post_init__(self) -> None:
        from ..errors import UsageError

        for name, allowed in (
            ("image_format", IMAGE_FORMATS),
            ("npy_size", NPY_SIZES),
            ("class_scale", CLASS_SCALES),
        ):
            if getattr(self, name) not in allowed:
                raise UsageError(
                    f"PictureOptions.{name} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )


@dataclass
class PictureFile:
    """One overlay or guided picture: its file name and model-size content."""

    name: str
    heat: np.ndarray | None = None  # (h, w) float32 map in [0, 1]
    rgb: np.ndarray | None = None  # (h, w, 3) uint8 guided picture
    boxes: list[Box] = field(default_factory=list)  # drawn over it, in display pixels
    highlight: int | None = None  # the box drawn thick (the one the map explains)


@dataclass
class NpyFile:
    name: str
    array: np.ndarray  # float32 map; resized to ``size`` when the file is written
    size: tuple[int, int] | None = None  # (height, width) or None to keep the array's size


@dataclass
class ImagePlan:
    """Everything the writer needs for one image (small arrays only)."""

    record: dict[str, Any]
    display: Image.Image
    pictures: list[PictureFile] = field(default_factory=list)
    npys: list[NpyFile] = field(default_factory=list)
    grid_name: str | None = None
    grid_rows: list[tuple[str, list[Panel | None]]] = field(default_factory=list)
    grid_title: str = ""
    heat_legend: str = ""
    grid_picture: Image.Image | None = None  # the grid's input picture, when not ``display``

    def set_grid(
        self,
        rows: list[tuple[str, list[Panel | None]]],
        ext: str,
        model: str,
        layers: list[str],
        legend: str,
        what: str = "",
    ) -> None:
        """The grid file: its rows, and a title naming the image, the model, ``what`` (a task)
        and the layers (their count when the names are long)."""
        from ..viz import printable

        stem, text = self.record["stem"], ", ".join(layers)
        text = text if len(text) <= 60 else f"{len(layers)} layers"
        said = ("layer" if len(layers) == 1 else "layers") + f": {text}"
        self.grid_title = "  |  ".join(printable(p) for p in (stem, model, what, said) if p)
        self.grid_name, self.grid_rows, self.heat_legend = f"{stem}.grid.{ext}", rows, legend


def new_plan(
    item: Sample,
    image: Image.Image,
    display: Image.Image,
    result: Explanation,
    methods: list[str],
    targets: list[dict[str, Any]],
    top5: list[dict[str, Any]],
    kind: str,
    task: str | None = None,
) -> ImagePlan:
    """An image's plan with its record for ``summary.json`` (the files and seconds are filled in
    as they are written)."""
    from .. import io

    record: dict[str, Any] = {
        "source": item.source,
        "stem": item.stem,
        "size": [image.width, image.height],
        "display_size": [display.width, display.height],
        **({} if task is None else {"task": task}),  # the records of a task only
        "top5": top5,
        "probability_kind": kind,
        "target": targets[0] if targets else None,
        "targets": targets,
        "layers": result.layer_names,
        "methods": methods,
        "files": [],
        "seconds": 0.0,
        "error": None,
    }
    meta = io.image_meta(image)
    if meta:
        record["input"] = meta
    return ImagePlan(record=record, display=display)


def class_label(spec: ModelSpec, cls: int, single_logit: bool = False) -> str:
    """A class's label; for a single-logit (sigmoid) model class 1 is the positive class (the
    one name given, or the second of two) and class 0 the negative class.

    >>> from camscope.models import ModelSpec
    >>> class_label(ModelSpec("m", class_names=["pneumonia"]), 0, single_logit=True)
    'not pneumonia (negative class)'
    """
    names = spec.class_names
    if not single_logit or len(names) == 2:
        return spec.label(cls)
    positive = names[0] if len(names) == 1 else "positive class"
    if cls == 1:
        return positive
    return f"not {positive} (negative class)" if names else "negative class"


def _shared_maps(result: Explanation, method: str, i: int, size: tuple[int, int]) -> torch.Tensor:
    """``(K, H, W)`` maps of one method on one scale across the K classes (module docstring)."""
    import torch
    import torch.nn.functional as F

    per_layer = []
    for raws in result.layer_raw.values():
        if method not in raws:
            continue  # skipped at this layer
        raw = raws[method][i].float()
        if raw.ndim == 4:  # guided: (K, 3, H, W) input-space gradients -> magnitude
            magnitude = raw.abs().amax(1)
        else:
            magnitude = F.interpolate(
                raw.clamp(min=0)[:, None], size=size, mode="bilinear", align_corners=False
            )[:, 0]
        per_layer.append(magnitude / magnitude.max().clamp(min=torch.finfo(torch.float32).tiny))
    if not per_layer:
        return result.maps[method][i].float()
    mean = torch.stack(per_layer).mean(0)
    return mean / mean.max().clamp(min=torch.finfo(torch.float32).tiny)


def plan_image(
    item: Sample,
    image: Image.Image,
    result: Explanation,
    i: int,
    spec: ModelSpec,
    methods: list[str],
    options: PictureOptions,
) -> ImagePlan:
    """The pictures and record for image ``i`` of ``result`` (see the module docstring)."""
    from .. import viz
    from ..methods import get_method

    per_class = result.targets.ndim == 2
    class_ids = [int(c) for c in result.targets[i].reshape(-1).tolist()]
    probs: list[float | None] = [None] * len(class_ids)
    if result.probabilities is not None:
        probs = [float(p) for p in result.probabilities[i].reshape(-1).tolist()]
    kind = result.probability_kind
    layer_names = result.layer_names
    drawn = [m for m in methods if m in result.maps]
    ext = IMAGE_FORMATS[options.image_format]
    shared = per_class and len(class_ids) > 1 and options.class_scale == "shared"
    height, width = result.maps[drawn[0]].shape[-2:] if drawn else (1, 1)
    size = (int(height), int(width))

    prediction = result.prediction  # None for callable targets
    single = prediction is not None and prediction.binary

    def label(k: int) -> str:
        return viz.printable(class_label(spec, class_ids[k], single)).replace("\n", " ")

    def caption(k: int) -> str:
        p = probs[k]
        if p is None:
            return label(k)
        return f"{label(k)}, p = {p:.2f}" + (" (sigmoid)" if kind == "sigmoid" else "")

    display = viz.to_display_rgb(image, options.max_side)
    top5 = []
    if prediction is not None:
        top5 = [_entry(spec, c, p, single) for c, p in prediction.ranked(i, 5)]
    targets = [_entry(spec, c, p, single) for c, p in zip(class_ids, probs)]
    plan = new_plan(item, image, display, result, drawn, targets, top5, kind)
    rows: list[tuple[str, list[viz.Panel | None]]]
    if per_class:
        rows = [(f"top-{k + 1}: {caption(k)}", []) for k in range(len(class_ids))]
    else:  # one class
        mean = f"  |  mean of {len(layer_names)} layers" if len(layer_names) > 1 else ""
        rows = [(f"target: {caption(0)}{mean}", [])]
    for method in drawn:
        agnostic = not get_method(method).class_specific
        maps = _shared_maps(result, method, i, size) if shared else result.maps[method][i]
        maps = maps.float().reshape(len(class_ids), *size)
        raw = result.raw[method][i]
        guided = raw.ndim == (4 if per_class else 3)
        raw = raw.reshape(len(class_ids), *raw.shape[-3:]) if guided else raw
        spread = viz.guided_spread(raw.cpu().numpy()) if guided and shared else None
        for k in range(len(class_ids)):
            if agnostic and k > 0:
                rows[k][1].append(None)  # the same map for every class: drawn once
                continue
            suffix = f".{class_ids[k]}" if per_class and not agnostic else ""
            picture = PictureFile(f"{item.stem}.{method}{suffix}.{ext}")
            title = method
            if agnostic:
                title += "\n(class-agnostic" + (", same for every class)" if per_class else ")")
            elif method in _AGAINST:
                title += f"\n(evidence against {label(k)})"
            ran_at = [name for name in layer_names if method in result.layer_raw.get(name, {})]
            if not guided and 0 < len(ran_at) < len(layer_names):  # skipped at the others
                title += f"\n(layer {viz.printable(', '.join(ran_at))} only)"
            if guided:
                picture.rgb = viz.guided_to_rgb(raw[k].cpu().numpy(), spread)
                if len(layer_names) > 1:
                    title += f"\n(layer {layer_names[0]})"
                panel = viz.Panel(title, rgb=picture.rgb, signed=True)
            else:
                picture.heat = maps[k].cpu().numpy()
                panel = viz.Panel(title, heatmap=picture.heat)
            if options.overlays:
                plan.pictures.append(picture)
            rows[k][1].append(panel)
            if options.save_npy:
                base = f"{item.stem}.{method}{suffix}"
                plan.npys.extend(_npys(result, method, i, k, base, options.npy_size, image))
    if not per_class and len(layer_names) > 1:
        layer_rows = []
        for name in layer_names:
            panels: list[viz.Panel | None] = []
            for method in drawn:
                if method not in result.layer_maps.get(name, {}):
                    continue
                raw = result.layer_raw[name][method][i]
                if raw.ndim == 3:
                    panels.append(
                        viz.Panel(method, rgb=viz.guided_to_rgb(raw.cpu().numpy()), signed=True)
                    )
                else:
                    panels.append(
                        viz.Panel(method, heatmap=result.layer_maps[name][method][i].cpu().numpy())
                    )
            layer_rows.append((f"layer {name}", panels))
        rows = layer_rows + rows
    if options.grid:
        legend = (
            "relevance; the classes' maps share one scale per method"
            if shared
            else "relevance, each map scaled to its own maximum"
        )
        plan.set_grid(rows, ext, spec.name, layer_names, legend)
    return plan


def _npys(
    result: Explanation, method: str, i: int, k: int, base: str, npy_size: str, image: Image.Image
) -> list[NpyFile]:
    """``.npy`` maps at the layer's, the model input's or the image's resolution (the maps as
    :func:`camscope.explain` returns them: ReLU'd and min-max normalised per class)."""
    from ..core.ops import normalise

    per_class = result.targets.ndim == 2
    if npy_size in ("model", "image"):
        maps = result.maps[method][i]
        model_map = (maps[k] if per_class else maps).float().cpu().numpy()
        size = (image.height, image.width) if npy_size == "image" else None
        return [NpyFile(f"{base}.npy", model_map, size)]
    out = []
    layers = [name for name, raws in result.layer_raw.items() if method in raws]
    for name in layers:
        raw = result.layer_raw[name][method][i]
        raw = raw[k] if per_class else raw
        layer_map = normalise(raw.abs().amax(0) if raw.ndim == 3 else raw)  # guided: magnitude
        suffix = f".{name}" if len(result.layer_raw) > 1 else ""
        out.append(NpyFile(f"{base}{suffix}.npy", layer_map.float().cpu().numpy()))
    return out


def _entry(
    spec: ModelSpec, cls: int, probability: float | None, single_logit: bool = False
) -> dict[str, Any]:
    return {
        "class": cls,
        "label": class_label(spec, cls, single_logit),
        "probability": None if probability is None else round(probability, 6),
    }
