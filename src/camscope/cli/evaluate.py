"""``camscope evaluate``: run the papers' evaluation protocols and write a leaderboard report.

Writes ``results.jsonl`` (one line per image and method/layer, appended after every batch),
``results.csv`` and ``results.json`` (the leaderboard with 95% intervals), ``report.html``
(self-contained) and ``report.md`` (+ ``figures/``). ``--resume`` continues an interrupted run in
the same ``--out`` folder with the same settings. Images load as in ``camscope explain``; one that
cannot be read is reported and skipped, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..data.progress import Progress, shown
from ..errors import UsageError
from ._common import (
    add_max_pixels_argument,
    add_method_option_arguments,
    echo,
    parse_method_options,
    positive_int,
    split_list,
)
from ._labelled import add_data_arguments
from ._model import (
    ModelOptions,
    PreprocessingOptions,
    add_model_arguments,
    add_multilabel_argument,
    add_preprocessing_arguments,
)

_EPILOG = """\
metric families (--metrics, comma list or 'all'; default {default}):
{families}

data (--data, the one grammar of docs/architecture.md; evaluate needs boxes): builtin:N[:SEED],
  or a .csv, COCO .json or VOC .xml file, or a folder holding one of *.csv | *.json | *.xml,
  Annotations/*.xml (VOC), annotations/xmls/*.xml + images/ (Oxford-IIIT Pet),
  annotations/*.json (COCO, images beside it, in images/ or in the split's folder);
  --images DIR says where the images are. With an ImageNet-1k model, PASCAL VOC's class names map
  onto ImageNet classes by a built-in table (docs/evaluation.md); --class-map FILE maps any label.

examples:
  camscope evaluate --data builtin:50 --methods gradcam,gradcam++,layercam --out out/eval
  camscope evaluate --data VOC2007/ --unmapped skip --methods all --metrics all --out out/voc
  camscope evaluate --data pets/ --class-map pets_map.json --out out/pets
  camscope evaluate --data builtin:50 --out out/eval --resume      # continue an interrupted run
"""


def _epilog() -> str:
    from ..evaluation.registry import default_families, help_lines

    return _EPILOG.format(default=",".join(default_families()), families="\n".join(help_lines()))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate",
        help="score CAM methods with localization, faithfulness and sanity metrics",
        description=(
            "Evaluate CAM methods on a data set with ground-truth boxes (VOC XML, COCO JSON, CSV) "
            "or the built-in benchmark, and write a leaderboard report."
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    add_multilabel_argument(parser)
    add_preprocessing_arguments(parser)
    parser.add_argument(
        "--methods",
        "--method",
        default="gradcam,gradcam++,xgradcam,layercam,eigencam,randomcam",
        metavar="LIST",
        help="comma list of methods or 'all' (default: %(default)s; randomcam, random channel "
        "weights, is the leaderboard's floor: keep it in your own list)",
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
        help="annotations (a file or a folder in a common layout, see below) or builtin:N[:SEED] "
        "for N images of the built-in benchmark (default %(default)s)",
    )
    add_data_arguments(parser, unmapped=("error", "skip"), data=False)
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the built-in benchmark (default 0)"
    )
    parser.add_argument(
        "--metrics", default=None, metavar="LIST", help="metric families (see below) or 'all'"
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
        "--robustness-samples",
        type=positive_int,
        default=8,
        metavar="N",
        help="noisy copies per image for the robustness family (default 8)",
    )
    parser.add_argument(
        "--robustness-radius",
        type=float,
        default=0.02,
        metavar="R",
        help="uniform noise radius on the [0, 1] pixel scale for the robustness family (default 0.02)",
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=3,
        metavar="K",
        help="worst and best images per method in the report (default 3; 0: none)",
    )
    add_max_pixels_argument(parser)
    add_method_option_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def parse_metrics(text: str | None) -> list[str]:
    """``--metrics``: a comma list of registered families, ``all``, or (None) the default set."""
    from ..evaluation.registry import check_families, default_families, family_names

    if text is None:
        return default_families()
    names = split_list([text])
    if [n.lower() for n in names] == ["all"]:
        return family_names()
    return check_families(names, "--metrics")


def _fingerprint(path: str | Path) -> str:
    """``/abs/path (sha256 0123456789abcdef)``: what a file is, not only where it is."""
    from ..models.fingerprint import PREFIX, file_digest

    file = Path(path).expanduser()
    try:
        digest = file_digest(file).removeprefix(PREFIX)
    except OSError as err:
        raise UsageError(f"cannot read {str(file)!r}: {err.strerror or err}") from None
    return f"{file.resolve()} (sha256 {digest[:16]})"


def _load_data(args: argparse.Namespace, spec: Any) -> tuple[Any, str, str, list[str]]:
    """The data, its description for config.json, the label rule and the report's data notes
    (:func:`camscope.data.read.read_data`, which says the notes on stderr)."""
    from ._labelled import read_data

    data = read_data(args, spec, command="evaluate", need="boxes")
    if data.kind == "builtin":
        # The built-in benchmark's image i does not depend on N, so a resumed run may grow N.
        return data, f"builtin (seed {data.details['generator_seed']})", "", []
    labels = f"unmapped {args.unmapped}"
    if args.class_map:
        labels = f"class map {_fingerprint(args.class_map)}; {labels}"
    notes = [f"data: {data.description}", *data.notes]
    return data, str(Path(args.data).expanduser().resolve()), labels, notes


def run(args: argparse.Namespace) -> int:
    from ._common import parse_methods

    metrics = parse_metrics(args.metrics)
    methods = parse_methods(args.methods)
    layers = split_list(args.layers) or ["auto"]
    method_options = parse_method_options(args.option)
    from .. import evaluation

    # settings are checked before the model loads (NaN, ranges)
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
        random_init=bool(args.random_init),
        allow_outside_paths=bool(args.allow_outside_paths),
        robustness_samples=args.robustness_samples,
        robustness_radius=args.robustness_radius,
        method_options=method_options,
        multilabel=bool(args.multilabel),
    )
    config.validate()
    from ..outputs import output_lock

    # a bad --out or a busy one is said before the model loads; held until the report is written
    with output_lock(args.out, "camscope evaluate") as out:
        return _evaluate(args, config, out)


def _evaluate(args: argparse.Namespace, config: Any, out: Path) -> int:
    from .. import evaluation
    from ..evaluation.report import write_report
    from ._model import apply_preprocessing, load_model

    if args.weights is not None:
        config.weights = _fingerprint(args.weights)
    model, spec, _device = load_model(ModelOptions.from_args(args))
    spec, preprocessing_notes = apply_preprocessing(
        model, spec, PreprocessingOptions.from_args(args)
    )
    for line in preprocessing_notes:
        sys.stderr.write(f"camscope evaluate: {shown(line)}\n")
    data, config.data, config.labels, data_notes = _load_data(args, spec)
    config.model = spec.name
    config.model_input = {
        k: v
        for k, v in spec.to_dict().items()
        if k in ("input_size", "mean", "std", "interpolation", "num_classes", "channels")
    }
    config.images = str(Path(args.images).expanduser().resolve()) if args.images else ""

    with Progress(label="camscope evaluate", enabled=not args.no_progress) as bar:
        result = evaluation.run_evaluation(
            model,
            spec,
            data.items,
            config,
            args.out,
            resume=args.resume,
            progress=bar,
            examples=max(0, args.examples),
            max_pixels=args.max_pixels,
            on_failure=bar.skipped,
        )
    notes = [
        f"Model {spec.name}"
        + (f" ({config.weights})" if config.weights else "")
        + ("; random init" if config.random_init else "")
        + f"; data {args.data}"
        + (config.data[len("builtin") :] if config.data.startswith("builtin") else "")
        + f"; layers {', '.join(config.layers)}; metrics {', '.join(config.metrics)}.",
        f"WSOL threshold {config.threshold:g} of the max, largest 8-connected segment; pointing tolerance "
        f"{config.tolerance:g} px; deletion/insertion {config.steps} steps, substrates "
        f"{config.deletion_substrate}/{config.insertion_substrate}, pixels ranked by decreasing map value (ties in raster order).",
        *data_notes,
    ]
    html_path, _ = write_report(
        args.out,
        {**result.summary},
        result.examples,
        title=f"camscope evaluate: {spec.name}",
        notes=notes,
    )
    failed = len(result.failed)
    echo(
        f"{result.summary['images']} images evaluated; report: {shown(str(html_path))}"
        + (f"; {failed} image(s) skipped (see stderr and the report)" if failed else "")
    )
    return 1 if failed else 0
