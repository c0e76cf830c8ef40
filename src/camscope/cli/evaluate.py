"""``camscope evaluate``: run the papers' evaluation protocols and write a leaderboard report.

Writes ``results.jsonl`` (one line per image and method/layer, appended after every batch),
``results.csv`` and ``results.json`` (the leaderboard with 95% confidence intervals),
``report.html`` (self-contained) and ``report.md`` (+ ``figures/``). ``--resume`` continues an
interrupted run in the same ``--out`` folder with the same settings.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError
from ..metrics import DEFAULT_METRICS, FAMILIES
from ._common import (
    add_method_option_arguments,
    echo,
    parse_method_options,
    positive_int,
    split_list,
)
from ._model import ModelOptions, add_model_arguments

_DEFAULT = ",".join(DEFAULT_METRICS)

_EPILOG = f"""\
metric families (--metrics, comma list or 'all'; default {_DEFAULT}):
  loc             WSOL box (15% of max, largest 8-connected segment): top-1/top-5 loc. error, IoU
  pointing        pointing game (15 px tolerance) and top-5 pointing with a reject option
  energy          energy-based pointing game (share of map energy in the boxes)
  discrimination  two-object images: the map of A's class on A, not on B
  drop            Average Drop %, Increase in Confidence %, Win % (input x map)
  deletion        deletion AUC (RISE; --steps, --deletion-substrate)
  insertion       insertion AUC (RISE; --steps, --insertion-substrate)
  road            ROAD most/least relevant first with noisy linear imputation
  occlusion       Spearman correlation with an occlusion map (shared by all methods)
  sanity          cascading parameter randomization on --sanity-images images

examples:
  camscope evaluate --data builtin:50 --methods gradcam,gradcam++,layercam --out out/eval
  camscope evaluate --data voc_subset/ --methods all --metrics all --out out/voc
  camscope evaluate --data builtin:50 --out out/eval --resume      # continue an interrupted run
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate",
        help="score CAM methods with localization, faithfulness and sanity metrics",
        description=(
            "Evaluate CAM methods on a data set with ground-truth boxes (VOC XML, COCO JSON, CSV) "
            "or the built-in benchmark, and write a leaderboard report."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--methods",
        "--method",
        default="gradcam,gradcam++,xgradcam,layercam,eigencam",
        metavar="LIST",
        help="comma list of methods or 'all' (default: %(default)s)",
    )
    parser.add_argument(
        "--layers",
        "--layer",
        action="append",
        metavar="NAME",
        help="layer(s) to explain, each evaluated separately (repeat or comma list; default: automatic)",
    )
    parser.add_argument(
        "--data",
        default="builtin:50",
        metavar="DIR|FILE|builtin:N",
        help="annotations (VOC folder, COCO .json, .csv) or builtin:N for N images of the built-in benchmark (default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the built-in benchmark (default 0)"
    )
    parser.add_argument(
        "--metrics", default=_DEFAULT, metavar="LIST", help="metric families (see below) or 'all'"
    )
    parser.add_argument(
        "--out", default="out/evaluate", metavar="DIR", help="output folder (default %(default)s)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run stored in --out (same settings)"
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="evaluate only the first N images",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        metavar="N",
        help="images per explain call (default 8)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.15,
        help="WSOL threshold as a fraction of the map maximum (default 0.15)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=15.0,
        help="pointing-game tolerance in pixels at the model input size (default 15)",
    )
    parser.add_argument(
        "--steps", type=positive_int, default=20, help="deletion/insertion steps (default 20)"
    )
    parser.add_argument(
        "--deletion-substrate", choices=("zero", "blur", "mean", "black"), default="zero"
    )
    parser.add_argument(
        "--insertion-substrate", choices=("zero", "blur", "mean", "black"), default="blur"
    )
    parser.add_argument(
        "--sanity-images",
        type=positive_int,
        default=8,
        metavar="N",
        help="images for the randomization test (default 8)",
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=3,
        metavar="K",
        help="worst and best images per method in the report (default 3; 0: none)",
    )
    add_method_option_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def parse_metrics(text: str) -> list[str]:
    names = split_list([text])
    if [n.lower() for n in names] == ["all"]:
        return list(FAMILIES)
    bad = [n for n in names if n not in FAMILIES]
    if bad or not names:
        raise UsageError(
            f"--metrics: unknown family {bad or text!r}; choose from {', '.join(FAMILIES)} or 'all'"
        )
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    from ._common import parse_methods
    from ._model import load_model

    metrics = parse_metrics(args.metrics)
    methods = parse_methods(args.methods)
    layers = split_list(args.layers) or ["auto"]
    method_options = parse_method_options(args.option)
    if not 0.0 <= args.threshold <= 1.0:
        raise UsageError(f"--threshold must be a fraction in [0, 1]; got {args.threshold}")
    if args.tolerance < 0:
        raise UsageError(f"--tolerance must be >= 0 pixels; got {args.tolerance}")
    from .. import evaluation
    from ..data.annotations import load_dataset
    from ..data.classes import ClassMapper
    from ..data.synthetic import SyntheticBenchmark
    from ..evaluation.report import write_report

    model, spec, _device = load_model(ModelOptions.from_args(args))
    data: Any
    if args.data.startswith("builtin"):
        _, _, count = args.data.partition(":")
        try:
            n = int(count or 50)
        except ValueError:
            raise UsageError(
                f"--data {args.data!r}: expected builtin:N with N a whole number"
            ) from None
        size = int(spec.input_size[0]) if spec.input_size[0] == spec.input_size[1] else 224
        data = list(SyntheticBenchmark(n, size=size, seed=args.seed))
    else:
        data = load_dataset(args.data, ClassMapper(spec.class_names or None))
    if args.limit:
        data = data[: args.limit]
    config = evaluation.EvalConfig(
        methods=methods,
        layers=layers,
        metrics=metrics,
        batch_size=args.batch_size,
        threshold=args.threshold,
        tolerance=args.tolerance,
        steps=args.steps,
        deletion_substrate=args.deletion_substrate,
        insertion_substrate=args.insertion_substrate,
        sanity_images=args.sanity_images,
        # The built-in benchmark's image i does not depend on N, so a resumed run may grow N.
        data=f"builtin (seed {args.seed})" if args.data.startswith("builtin") else args.data,
        model=spec.name,
        method_options=method_options,
    )
    result = evaluation.run_evaluation(
        model,
        spec,
        data,
        config,
        args.out,
        resume=args.resume,
        progress=not args.no_progress,
        examples=max(0, args.examples),
    )
    notes = [
        f"Model {spec.name}; data {args.data} (seed {args.seed}); layers {', '.join(layers)}; metrics {', '.join(metrics)}.",
        f"WSOL threshold {config.threshold:g} of the max, largest 8-connected segment; pointing tolerance "
        f"{config.tolerance:g} px; deletion/insertion {config.steps} steps, substrates "
        f"{config.deletion_substrate}/{config.insertion_substrate}, pixels ranked by decreasing map value (ties in raster order).",
    ]
    html_path, _ = write_report(
        args.out,
        {**result.summary},
        result.examples,
        title=f"camscope evaluate: {spec.name}",
        notes=notes,
    )
    echo(f"{result.summary['images']} images evaluated; report: {html_path}")
    return 0
