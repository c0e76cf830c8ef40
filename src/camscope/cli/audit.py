"""``camscope audit``: find data-set bias and shortcut features with the maps, per class.

Writes ``audit.json`` (per class: n, accuracy, object_energy, hotspot_box, hotspot_share,
hotspot_hits, flags; the flagged classes), ``images.jsonl``, ``mean_map_<class>.png`` and a
self-contained ``report.html``. Exit status: 0 all images audited, 1 some could not be read (the
others are audited), 2 usage error.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import (
    echo,
    positive_int,
    unit_float,
)
from ._labelled import add_data_arguments, add_run_arguments, data_help, one_method
from ._model import ExplainMode, ModelOptions, add_model_arguments

_EPILOG = (
    data_help()
    + """
flags (defaults in brackets):
  object energy   more than --max-outside-energy [0.5] of the map energy outside the boxes, and
                  less than --min-object-lift [2.0] times the boxes' share of the image inside
  hot spot        the box around the fewest pixels holding --hotspot-energy [0.5] of the class's
                  mean map energy covers at most --max-hotspot-area [0.25] of the image and at
                  least --min-hotspot-hits [0.5] of the images peak inside it (classes with at
                  least --min-images [5] maps)

examples:
  camscope audit --model out/run --data out/bias/test --out out/audit
  camscope audit --data builtin:40 --method gradcam++ --out out/audit-builtin
"""
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit",
        help="find data-set bias and shortcuts: per-class object energy, hot spots and flags",
        description=(
            "Explain every image for its predicted and its true class, and report per class how "
            "much of the map lies on the objects and whether the maps peak at one fixed place."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    add_data_arguments(parser, unmapped=("error", "skip"))
    parser.add_argument("--out", default="out/audit", metavar="DIR", help="output folder")
    parser.add_argument("--method", default="gradcam", help="CAM method (default %(default)s)")
    parser.add_argument(
        "--layer", default="auto", metavar="NAME", help="layer to explain (default auto)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, metavar="N")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N")
    parser.add_argument("--seed", type=int, default=0, help="seed of builtin:N (default 0)")
    parser.add_argument("--hotspot-energy", type=unit_float, default=0.5, metavar="SHARE")
    parser.add_argument("--max-hotspot-area", type=unit_float, default=0.25, metavar="SHARE")
    parser.add_argument("--min-hotspot-hits", type=unit_float, default=0.5, metavar="SHARE")
    parser.add_argument("--min-images", type=positive_int, default=5, metavar="N")
    parser.add_argument("--max-outside-energy", type=unit_float, default=0.5, metavar="SHARE")
    parser.add_argument("--min-object-lift", type=float, default=2.0, metavar="X")
    parser.add_argument(
        "--grid", type=positive_int, default=32, help="side of the pooled mean maps (default 32)"
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=4,
        metavar="K",
        help="most affected images per flagged class in the report (default 4; 0: none)",
    )
    return add_run_arguments(parser, run)


def run(args: argparse.Namespace) -> int:
    from ..audit.report import write_audit
    from ..audit.run import AuditConfig, run_audit
    from ..audit.stats import AuditThresholds
    from ..data.progress import Progress
    from ..errors import UsageError
    from ._common import parse_layers, parse_method_options
    from ._labelled import read_data
    from ._model import load_model

    method = one_method(args.method, "the audit's map")
    thresholds = AuditThresholds(
        hotspot_energy=args.hotspot_energy,
        max_hotspot_area=args.max_hotspot_area,
        min_hotspot_hits=args.min_hotspot_hits,
        min_images=args.min_images,
        max_outside_energy=args.max_outside_energy,
        min_object_lift=args.min_object_lift,
    )
    thresholds.validate()
    options = parse_method_options(args.option)
    model, spec, _device = load_model(ModelOptions.from_args(args))
    data = read_data(args, spec, command="audit")
    if not data.items:
        raise UsageError(f"--data {args.data!r} holds no images to audit")
    config = AuditConfig(
        method=method,
        layer=parse_layers([args.layer]),
        batch_size=args.batch_size,
        grid=args.grid,
        thresholds=thresholds,
        examples=max(0, args.examples),
        method_options=options,
        max_pixels=args.max_pixels,
        multilabel=ExplainMode.from_args(args).multilabel,
    )
    with Progress(label="camscope audit", enabled=not args.no_progress) as bar:
        result = run_audit(model, spec, data, config, progress=bar, on_skip=bar.skipped)
    settings = {
        "model": spec.name,
        "data": args.data,
        "method": config.method,
        "layer": result.layer,
        "grid": config.grid,
        "notes": [f"data: {data.description}", *data.notes],
        **{k: getattr(thresholds, k) for k in thresholds.__dataclass_fields__},
    }
    paths = write_audit(result, args.out, settings, title=f"camscope audit: {spec.name}")
    flagged = ", ".join(result.flagged) or "none"
    echo(
        f"{len(result.records)} images audited, {len(result.failed)} failed; flagged classes: "
        f"{flagged}; report: {paths['html']}"
    )
    return 1 if result.failed else 0
