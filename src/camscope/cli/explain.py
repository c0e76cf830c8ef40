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
    add_max_pixels_argument,
    add_method_option_arguments,
    echo,
    methods_within_budget,
    parse_layers,
    parse_method_options,
    parse_methods,
    parse_target,
    positive_int,
    split_list,
    unit_float,
    warn,
)
from ._model import ExplainMode, ModelOptions, add_explain_mode_arguments, add_model_arguments

if TYPE_CHECKING:
    from ..batch.inputs import InputItem

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
    add_explain_mode_arguments(parser)
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
    explain_mode: ExplainMode = field(default_factory=ExplainMode)


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
        explain_mode=ExplainMode.from_args(args),
    )
    return explain_images(options)


def explain_images(options: ExplainOptions) -> int:
    """Run the whole command; returns 0, or 1 when some images failed."""
    import torch
    from tqdm import tqdm

    from .. import io, viz
    from ..batch.files import LoadedImage, PictureWriter, explain_groups
    from ..batch.inputs import gather_inputs
    from ..core.layers import resolve_layers
    from ..core.targets import parse_topk
    from ._model import load_model

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
    choice = methods_within_budget(
        options.methods,
        methods,
        model,
        layer_names,
        dummy,
        targets_per_image=parse_topk(target) or 1 if isinstance(target, str) else 1,
        method_options=options.method_options,
        allow_slow=options.explain_mode.allow_slow,
        budget=options.explain_mode.pass_budget,
    )
    for name, why in choice.left_out.items():
        warn(f"camscope explain: left out {name}: {why}")
    for note in choice.notes:
        warn(f"camscope explain: {note}")
    methods = choice.methods
    log.info("model %s, layers %s, methods %s, target %r", spec.name, layer_names, methods, target)

    items = gather_inputs(options.images)
    max_pixels = options.max_pixels or io.DEFAULT_MAX_PIXELS
    writer = PictureWriter(
        options.out, methods, spec, options.colormap, options.alpha, options.save_npy
    )
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
            loaded: list[LoadedImage] = []
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
                loaded.append(LoadedImage(item, image, x, time.perf_counter() - began))
            for group, result, error in explain_groups(
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
        "methods_left_out": choice.left_out,
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
        **options.explain_mode.explain_kwargs(),
    }
