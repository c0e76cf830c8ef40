"""``camscope audit``: find data-set bias and shortcut features with the maps, per class.

Writes ``audit.json`` (per class: n, accuracy, object_energy, hotspot_box, hotspot_share,
hotspot_hits, flags; the flagged classes), ``images.jsonl``, ``mean_map_<class>.png`` and a
self-contained ``report.html``. Exit status: 0 all images audited, 1 some could not be read (the
others are audited), 2 usage error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import options, values
from ._common import command_parser, echo

_HELP = "find data-set bias and shortcuts: per-class object energy, hot spots and flags"
_DESCRIPTION = (
    "Explain every image for its predicted and its true class, and report per class how "
    "much of the map lies on the objects and whether the maps peak at one fixed place."
)
_EPILOG = (
    options.DATA_HELP
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
    parser = command_parser(subparsers, "audit", _HELP, _DESCRIPTION, _EPILOG)
    add = parser.add_argument
    options.add(
        parser,
        *options.MODEL,
        *options.LABELLED,
        "out",
        "method",
        "layer",
        "batch_size",
        "limit",
        "seed",
        "multilabel",
        "max_pixels",
        "option",
        "no_progress",
        data={"required": True},
        out={"default": Path("out/audit")},
        method={"help": "the CAM method of the audit's maps, one (default gradcam)"},
        batch_size={"default": 16, "help": "images per pass (default 16)"},
    )
    share = (
        ("--hotspot-energy", 0.5, open_share),
        ("--max-hotspot-area", 0.25, open_share),
        ("--min-hotspot-hits", 0.5, open_share),
        ("--max-outside-energy", 0.5, options.unit_float),
    )
    for flag, default, kind in share:
        add(flag, type=kind, default=default, metavar="SHARE")
    add("--min-images", type=options.positive_int, default=5, metavar="N")
    add("--min-object-lift", type=options.non_negative_float, default=2.0, metavar="X")
    add(
        "--grid",
        type=options.positive_int,
        default=32,
        help="side of the pooled mean maps (default 32)",
    )
    add(
        "--examples",
        type=options.non_negative_int,
        default=4,
        metavar="K",
        help="most affected images per flagged class in the report (default 4; 0: none)",
    )
    return parser


open_share = options.bounded(float, 0, 1, above=True, what="a share in (0, 1]")


def run(args: argparse.Namespace) -> int:
    from ..audit.report import write_audit
    from ..audit.run import AuditConfig, run_audit
    from ..audit.stats import AuditThresholds
    from ..data.progress import Progress
    from ..errors import UsageError

    method = values.one_method(args, "the audit's map")
    fields = AuditThresholds.__dataclass_fields__  # each is an option of the same name
    thresholds = AuditThresholds(**{name: getattr(args, name) for name in fields})
    thresholds.validate()
    method_options = values.method_options(args)
    model, spec, _, _ = values.model_recipe(args).load(hints="cli")
    data = values.read_labelled(args, spec, command="audit")
    if not data.items:
        raise UsageError(f"--data {args.data!r} holds no images to audit")
    config = AuditConfig(
        method=method,
        layer=values.layer_spec(args.layer),
        thresholds=thresholds,
        method_options=method_options,
        **values.same_named(args, "batch_size grid examples max_pixels multilabel"),
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
        **{name: getattr(thresholds, name) for name in fields},
    }
    paths = write_audit(result, args.out, settings, title=f"camscope audit: {spec.name}")
    flagged = ", ".join(result.flagged) or "none"
    echo(
        f"{len(result.records)} images audited, {len(result.failed)} failed; flagged classes: "
        f"{flagged}; report: {paths['html']}"
    )
    return 1 if result.failed else 0
