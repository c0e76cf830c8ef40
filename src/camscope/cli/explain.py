"""``camscope explain``: heat maps for images, several methods from one forward/backward pass.

For every image this writes, into ``--out``:

* ``<stem>.<method>.png``: the map over the image at the image's own resolution (guided methods:
  the signed guided gradients as a colour image); with top-k targets one file per class,
  ``<stem>.<method>.<class>.png``;
* ``<stem>.grid.png``: the image and one column per method, titled with the label and probability;
  one row per layer when several layers are given (plus their mean), one row per class for top-k;
  with several layers the ``.png`` files show the mean map, except for the guided methods, whose
  signed gradients cannot be averaged meaningfully: they show the first layer;
* with ``--save-npy``: ``<stem>.<method>[.<class>].npy``, float32 (H, W) in [0, 1];
* ``summary.json``: the model, its preprocessing, and for each image its top-5 classes, the
  explained class(es), layers, methods, files, seconds and error (if any).

Unreadable images are reported on stderr and in ``summary.json`` and skipped; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CamscopeError, UsageError
from ._common import (
    InputItem,
    ModelOptions,
    add_max_pixels_argument,
    add_method_option_arguments,
    add_model_arguments,
    class_label,
    echo,
    gather_inputs,
    parse_layers,
    parse_method_options,
    parse_methods,
    parse_target,
    positive_int,
    split_list,
    unit_float,
)

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image
    from torch import nn

    from ..engine import Explanation
    from ..models import ModelSpec

log = logging.getLogger(__name__)

_EPILOG = """\
targets:
  top1 (default), top5, topk:K   the model's own top classes (one map per class for k > 1)
  285                            a class index
  "tabby cat"                    a class name (or one of its comma-separated synonyms)

layers:
  auto (default), first, middle, last, conv:N, or module names from `camscope layers MODEL`;
  repeat --layer or give a comma list to fuse several layers (mean of their maps)

examples:
  camscope explain cat.jpg dog.png --method gradcam,gradcam++,layercam --out out/pets
  camscope explain photos/ --target top3 --save-npy
  camscope explain --model resnet50 --layer layer3,layer4 --colormap jet
  camscope explain cat.jpg -m scorecam,ablationcam -O batch_size=16 -O precision=bfloat16
  camscope explain cat.jpg -m gradcam++ --aug-smooth --eigen-smooth
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "explain",
        help="write CAM heat maps for images (default: the demo images)",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files, folders or URLs (default: the four demo images)",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--method",
        "-m",
        default="gradcam",
        metavar="NAMES",
        help="comma-separated CAM methods, or 'all' (default gradcam; see `camscope methods`)",
    )
    parser.add_argument(
        "--layer",
        "-l",
        action="append",
        default=None,
        metavar="LAYER",
        help="layer(s) to explain, repeatable or comma-separated (default auto)",
    )
    parser.add_argument(
        "--target",
        "-t",
        default="top1",
        metavar="T",
        help="class to explain: top1, top5, topk:K, a class index or a class name (default top1)",
    )
    parser.add_argument(
        "--out", "-o", type=Path, default=Path("out/explain"), metavar="DIR", help="output folder"
    )
    parser.add_argument(
        "--save-npy", action="store_true", help="also save each map as float32 .npy in [0, 1]"
    )
    parser.add_argument(
        "--colormap",
        default="inferno",
        metavar="NAME",
        help="matplotlib colour map (default inferno; jet and turbo give the classic look)",
    )
    parser.add_argument(
        "--alpha", type=unit_float, default=0.5, help="heat-map opacity in [0, 1] (default 0.5)"
    )
    add_max_pixels_argument(parser)
    parser.add_argument(
        "--aug-smooth",
        action="store_true",
        help="average each map over flipped and rescaled copies of the image (6x the cost)",
    )
    parser.add_argument(
        "--eigen-smooth",
        action="store_true",
        help="use the first principal component of the weighted activations",
    )
    add_method_option_arguments(parser)
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        metavar="B",
        help="images per forward/backward pass (default 1)",
    )
    parser.set_defaults(run=run)
    return parser


@dataclass(frozen=True)
class ExplainOptions:
    """``camscope explain`` options as plain typed values (no argparse past this point)."""

    images: list[str] = field(default_factory=list)
    model: ModelOptions = field(default_factory=ModelOptions)
    methods: str = "gradcam"
    layers: list[str] = field(default_factory=list)
    target: str = "top1"
    out: Path = Path("out/explain")
    save_npy: bool = False
    colormap: str = "inferno"
    alpha: float = 0.5
    max_pixels: int | None = None
    batch_size: int = 1
    aug_smooth: bool = False
    eigen_smooth: bool = False
    method_options: dict[str, Any] = field(default_factory=dict)


def run(args: argparse.Namespace) -> int:
    options = ExplainOptions(
        images=list(args.images),
        model=ModelOptions.from_args(args),
        methods=args.method,
        layers=split_list(args.layer),
        target=args.target,
        out=args.out,
        save_npy=bool(args.save_npy),
        colormap=args.colormap,
        alpha=args.alpha,
        max_pixels=args.max_pixels,
        batch_size=args.batch_size,
        aug_smooth=bool(args.aug_smooth),
        eigen_smooth=bool(args.eigen_smooth),
        method_options=parse_method_options(args.option),
    )
    return explain_images(options)


@dataclass
class _Loaded:
    item: InputItem
    image: Image.Image
    x: torch.Tensor
    seconds: float


def explain_images(options: ExplainOptions) -> int:
    """Run the whole command; returns 0, or 1 when some images failed."""
    import torch
    from tqdm import tqdm

    from .. import io, viz
    from ..layers import resolve_layers
    from ._common import load_model

    # Everything that can be checked without the model is checked before loading it.
    methods = parse_methods(options.methods)
    layer = parse_layers(options.layers)
    viz.check_colormap(options.colormap)
    if not 0.0 <= options.alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1; got {options.alpha}")
    out = options.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the output folder {str(out)!r}: {err.strerror}") from None

    model, spec, device = load_model(options.model)
    target = parse_target(options.target, spec.class_names, spec.name)
    dummy = torch.zeros(1, 3, *spec.input_size, device=device)
    layer_names = [name for name, _ in resolve_layers(model, layer, dummy)]
    log.info("model %s, layers %s, methods %s, target %r", spec.name, layer_names, methods, target)

    items = gather_inputs(options.images)
    max_pixels = options.max_pixels or io.DEFAULT_MAX_PIXELS
    writer = _Writer(options, methods, spec)
    calls = _call_options(options)
    records: list[dict[str, Any]] = []
    failures = 0
    with tqdm(
        total=len(items),
        unit="img",
        file=sys.stderr,
        disable=True if len(items) <= 3 else None,
        leave=False,
    ) as bar:
        for start in range(0, len(items), options.batch_size):
            chunk = items[start : start + options.batch_size]
            loaded: list[_Loaded] = []
            for item in chunk:
                began = time.perf_counter()
                try:
                    image, x = item.load(spec, max_pixels)
                except CamscopeError as err:
                    failures += 1
                    reason = getattr(err, "reason", None) or str(err)
                    tqdm.write(
                        f"camscope explain: skipped {item.source}: {reason}", file=sys.stderr
                    )
                    records.append(_failed(item, str(err), time.perf_counter() - began))
                    bar.update(1)
                    continue
                if x.ndim == 3:
                    x = x.unsqueeze(0)
                loaded.append(_Loaded(item, image, x, time.perf_counter() - began))
            for group, result, error in _explain_groups(
                model, loaded, methods, layer_names, target, device, calls
            ):
                for i, entry in enumerate(group):
                    began = time.perf_counter()
                    share = entry.seconds + (result[1] / len(group) if result else 0.0)
                    if result is None:
                        failures += 1
                        tqdm.write(
                            f"camscope explain: failed on {entry.item.source}: {error}",
                            file=sys.stderr,
                        )
                        records.append(_failed(entry.item, str(error), share))
                    else:
                        record = writer.write(entry.item, entry.image, result[0], i)
                        record["seconds"] = round(share + time.perf_counter() - began, 4)
                        records.append(record)
                    bar.update(1)
    summary = {
        "camscope": _version(),
        "model": spec.name,
        "spec": spec.to_dict(),
        "device": str(device),
        "methods": methods,
        "layer": layer_names[0] if len(layer_names) == 1 else layer_names,
        "target": options.target,
        "colormap": options.colormap,
        "alpha": options.alpha,
        "aug_smooth": options.aug_smooth,
        "eigen_smooth": options.eigen_smooth,
        "method_options": options.method_options,
        "images": records,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    written = sum(len(r["files"]) for r in records)
    echo(
        f"explained {len(records) - failures} of {len(records)} image(s) with "
        f"{', '.join(methods)}: {written} file(s) in {out}/"
        + (f"; {failures} failed (see stderr and summary.json)" if failures else "")
    )
    return 1 if failures else 0


def _version() -> str:
    from .. import __version__

    return __version__


def _failed(item: InputItem, error: str, seconds: float) -> dict[str, Any]:
    return {
        "source": item.source,
        "stem": item.stem,
        "error": error,
        "files": [],
        "seconds": round(seconds, 4),
    }


def _call_options(options: ExplainOptions) -> dict[str, Any]:
    """Keyword arguments of :func:`camscope.explain`; long perturbation runs draw a bar on stderr
    when it is a terminal (the library itself prints nothing)."""
    method_options = dict(options.method_options)
    if sys.stderr.isatty():
        method_options.setdefault("progress", True)
    return {
        "aug_smooth": options.aug_smooth,
        "eigen_smooth": options.eigen_smooth,
        "method_options": method_options,
    }


def _explain_groups(
    model: nn.Module,
    loaded: list[_Loaded],
    methods: list[str],
    layers: list[str],
    target: str | int,
    device: torch.device,
    calls: dict[str, Any],
) -> list[tuple[list[_Loaded], tuple[Explanation, float] | None, str | None]]:
    """Explain a chunk in one call; if that fails for a reason other than a usage error, retry
    image by image so one bad image does not take the others with it."""
    import torch

    from ..engine import explain

    if not loaded:
        return []

    def attempt(group: list[_Loaded]) -> tuple[Explanation, float]:
        began = time.perf_counter()
        x = torch.cat([entry.x for entry in group]).to(device)
        layer = layers if len(layers) > 1 else layers[0]
        result = explain(model, x, methods, layer, target, **calls)
        return result, time.perf_counter() - began

    try:
        return [(loaded, attempt(loaded), None)]
    except CamscopeError:
        raise  # a bad layer/target/method affects every image: stop with exit code 2
    except (RuntimeError, ValueError) as err:
        if len(loaded) == 1:
            log.debug("explain failed", exc_info=True)
            return [(loaded, None, f"{type(err).__name__}: {err}")]
    results: list[tuple[list[_Loaded], tuple[Explanation, float] | None, str | None]] = []
    for entry in loaded:
        results.extend(_explain_groups(model, [entry], methods, layers, target, device, calls))
    return results


class _Writer:
    """Turns one image's part of an :class:`Explanation` into files and a summary record."""

    def __init__(self, options: ExplainOptions, methods: list[str], spec: ModelSpec) -> None:
        self.options = options
        self.methods = methods
        self.spec = spec

    def _label(self, cls: int) -> str:
        return class_label(self.spec.class_names, cls)

    def _entry(self, cls: int, probability: float | None) -> dict[str, Any]:
        return {
            "class": cls,
            "label": self._label(cls),
            "probability": None if probability is None else round(probability, 6),
        }

    def _picture(
        self, image: Image.Image, fused: torch.Tensor, raw: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(heat map at image size, guided RGB at image size or None)."""
        import torch.nn.functional as F

        from .. import io, viz

        size = (image.height, image.width)
        heat = io.resize_map(fused, size)
        if raw.ndim == 3:  # input-space (guided) gradients (3, H, W)
            up = F.interpolate(raw[None].float(), size=size, mode="bilinear", align_corners=False)[
                0
            ]
            return heat, viz.guided_to_rgb(up.cpu().numpy())
        return heat, None

    def write(
        self, item: InputItem, image: Image.Image, result: Explanation, i: int
    ) -> dict[str, Any]:
        import numpy as np

        from .. import io, viz

        opts = self.options
        out = opts.out
        per_class = result.targets.ndim == 2
        class_ids = [int(c) for c in result.targets[i].reshape(-1).tolist()]
        probs: list[float | None] = (
            [float(p) for p in result.probabilities[i].reshape(-1).tolist()]
            if result.probabilities is not None
            else [None] * len(class_ids)
        )
        top5: list[dict[str, Any]] = []
        if result.logits is not None:
            p_all = result.logits[i].float().softmax(-1)
            values, indices = p_all.topk(min(5, p_all.numel()))
            top5 = [
                self._entry(int(c), float(p)) for p, c in zip(values.tolist(), indices.tolist())
            ]
        layer_names = [result.layer] if isinstance(result.layer, str) else list(result.layer)
        files: list[str] = []
        rows: list[tuple[str, list[viz.Panel]]] = []

        def pick(t: torch.Tensor, k: int) -> torch.Tensor:
            return t[i, k] if per_class else t[i]

        def caption(k: int) -> str:
            p = probs[k]
            label = self._label(class_ids[k])
            return label if p is None else f"{label} (p={p:.2f})"

        for k, cls in enumerate(class_ids):
            suffix = f".{cls}" if per_class else ""
            panels: list[viz.Panel] = []
            for method in self.methods:
                heat, rgb = self._picture(
                    image, pick(result.maps[method], k), pick(result.raw[method], k)
                )
                png = out / f"{item.stem}.{method}{suffix}.png"
                if rgb is not None:
                    from PIL import Image as PILImage

                    PILImage.fromarray(rgb, mode="RGB").save(png)
                    panels.append(viz.Panel(f"{method}\n{caption(k)}", rgb=rgb))
                else:
                    viz.overlay(image, heat, opts.colormap, opts.alpha).save(png)
                    panels.append(viz.Panel(f"{method}\n{caption(k)}", heatmap=heat))
                files.append(png.name)
                if opts.save_npy:
                    npy = out / f"{item.stem}.{method}{suffix}.npy"
                    io.save_npy(npy, np.asarray(heat, dtype=np.float32))
                    files.append(npy.name)
            row_label = f"top-{k + 1}: {self._label(cls)}" if per_class else ""
            if not per_class and len(layer_names) > 1:
                row_label = f"mean of {len(layer_names)} layers"
                for panel in panels:  # guided maps are not fused: say which layer they show
                    if panel.rgb is not None:
                        method, _, rest = panel.title.partition("\n")
                        panel.title = f"{method} ({layer_names[0]})\n{rest}"
            rows.append((row_label, panels))
        if not per_class and len(layer_names) > 1:
            layer_rows = []
            for name in layer_names:
                panels = []
                for method in self.methods:
                    heat, rgb = self._picture(
                        image, result.layer_maps[name][method][i], result.layer_raw[name][method][i]
                    )
                    title = f"{method}\n{caption(0)}"
                    panels.append(
                        viz.Panel(title, rgb=rgb)
                        if rgb is not None
                        else viz.Panel(title, heatmap=heat)
                    )
                layer_rows.append((f"layer {name}", panels))
            rows = layer_rows + rows
        grid = out / f"{item.stem}.grid.png"
        layer_text = ", ".join(layer_names)
        if len(layer_text) > 60:
            layer_text = f"{len(layer_names)} layers"
        viz.save_grid(
            grid,
            image,
            rows,
            colormap=opts.colormap,
            alpha=opts.alpha,
            title=f"{item.stem}  |  {self.spec.name}  |  "
            + ("layer" if len(layer_names) == 1 else "layers")
            + f": {layer_text}",
        )
        files.append(grid.name)
        return {
            "source": item.source,
            "stem": item.stem,
            "size": [image.width, image.height],
            "top5": top5,
            "target": self._entry(class_ids[0], probs[0]),
            "targets": [self._entry(c, p) for c, p in zip(class_ids, probs)],
            "layers": layer_names,
            "methods": list(self.methods),
            "files": files,
            "seconds": 0.0,
            "error": None,
        }
