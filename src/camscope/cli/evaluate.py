"""``camscope evaluate``: run the papers' evaluation protocols and write a leaderboard report.

Writes ``results.jsonl`` (one line per image and method/layer, appended after every batch),
``results.csv`` and ``results.json`` (the leaderboard with 95% intervals), ``report.html``
(self-contained) and ``report.md`` (+ ``figures/``). ``--resume`` continues an interrupted run in
the same ``--out`` folder with the same settings. Images load as in ``camscope explain``; one that
cannot be read is reported and skipped, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import options, values
from ._common import command_parser, echo, warn

DEFAULT_METHODS = "gradcam,gradcam++,xgradcam,layercam,eigencam,randomcam"

_HELP = "score CAM methods with localization, faithfulness and sanity metrics"
_DESCRIPTION = (
    "Evaluate CAM methods on a data set with ground-truth boxes (VOC XML, COCO JSON, CSV) "
    "or the built-in benchmark, and write a leaderboard report."
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
    parser = command_parser(subparsers, "evaluate", _HELP, _DESCRIPTION, _epilog())
    add = parser.add_argument
    options.add(
        parser,
        *options.MODEL,
        "multilabel",
        *options.PREPROCESSING,
        "method",
        "layer",
        *options.LABELLED,
        "seed",
        method={
            "default": DEFAULT_METHODS,
            "help": "comma list of methods or 'all' (default: %(default)s; randomcam, random "
            "channel weights, is the leaderboard's floor: keep it in your own list)",
        },
        layer={
            "help": "layer(s) to explain, each evaluated separately (repeat or comma list; "
            "default: automatic)"
        },
        data={
            "default": "builtin:50",
            "help": "annotations (a file or a folder in a common layout, see below) or "
            "builtin:N[:SEED] for N images of the built-in benchmark (default %(default)s)",
        },
        seed={"help": "seed of the built-in benchmark (default 0)"},
    )
    add("--metrics", default=None, metavar="LIST", help="metric families (see below) or 'all'")
    options.add(
        parser,
        "out",
        "resume",
        "limit",
        "batch_size",
        out={"default": Path("out/evaluate")},
        resume={"help": "continue the run stored in --out (same settings)"},
        limit={"help": "evaluate only the first N images"},
        batch_size={"default": 8, "help": "images per explain call (default 8)"},
    )
    add(
        "--threshold",
        type=float,
        default=0.15,
        help="WSOL threshold as a fraction of the map maximum (default 0.15)",
    )
    add(
        "--tolerance",
        type=float,
        default=15.0,
        help="pointing-game tolerance in pixels at the model input size (default 15)",
    )
    add(
        "--steps",
        type=options.positive_int,
        default=20,
        help="deletion/insertion steps (default 20)",
    )
    add("--deletion-substrate", choices=("zero", "blur", "mean", "black"), default="zero")
    add("--insertion-substrate", choices=("zero", "blur", "mean", "black"), default="blur")
    add(
        "--sanity-images",
        type=options.positive_int,
        default=8,
        metavar="N",
        help="images for the randomization test (default 8)",
    )
    add(
        "--robustness-samples",
        type=options.positive_int,
        default=8,
        metavar="N",
        help="noisy copies per image for the robustness family (default 8)",
    )
    add(
        "--robustness-radius",
        type=float,
        default=0.02,
        metavar="R",
        help="uniform noise radius on the [0, 1] pixel scale for the robustness family (default 0.02)",
    )
    add(
        "--examples",
        type=options.non_negative_int,
        default=3,
        metavar="K",
        help="worst and best images per method in the report (default 3; 0: none)",
    )
    options.add(parser, "max_pixels", "option", "no_progress")
    return parser


def parse_metrics(text: str | None) -> list[str]:
    """``--metrics``: a comma list of registered families, ``all``, or (None) the default set."""
    from ..evaluation.registry import check_families, default_families, family_names

    if text is None:
        return default_families()
    names = values.split_list(text)
    if [n.lower() for n in names] == ["all"]:
        return family_names()
    return check_families(names, "--metrics")


def run(args: argparse.Namespace) -> int:
    from .. import evaluation
    from ..methods import parse_methods
    from ..outputs import output_lock

    # settings are checked before the model loads (NaN, ranges)
    config = evaluation.EvalConfig(
        methods=parse_methods(args.method),
        layers=values.split_list(args.layer) or ["auto"],
        metrics=parse_metrics(args.metrics),
        method_options=values.method_options(args),
        **values.same_named(
            args,
            "batch_size threshold tolerance steps deletion_substrate insertion_substrate "
            "sanity_images random_init allow_outside_paths robustness_samples robustness_radius "
            "multilabel",
        ),
    )
    config.validate()
    # a bad --out or a busy one is said before the model loads; held until the report is written
    with output_lock(args.out, "camscope evaluate") as out:
        return _evaluate(args, config, out)


def _evaluate(args: argparse.Namespace, config: Any, out: Path) -> int:
    from .. import evaluation
    from ..data.progress import Progress, shown
    from ..evaluation.report import write_report

    model, spec, _, preprocessing_notes = values.model_recipe(args).load(hints="cli")
    for line in preprocessing_notes:
        warn(f"camscope evaluate: {shown(line)}")
    data = values.read_labelled(args, spec, command="evaluate", need="boxes")
    data_notes = config.describe(
        spec, data, args.data, **values.same_named(args, "weights class_map unmapped images")
    )
    with Progress(label="camscope evaluate", enabled=not args.no_progress) as bar:
        result = evaluation.run_evaluation(
            model,
            spec,
            data.items,
            config,
            args.out,
            progress=bar,
            on_failure=bar.skipped,
            **values.same_named(args, "resume examples max_pixels"),
        )
    html_path, _ = write_report(
        args.out,
        {**result.summary},
        result.examples,
        title=f"camscope evaluate: {spec.name}",
        notes=[*config.report_notes(args.data), *data_notes],
    )
    text = f"{result.summary['images']} images evaluated; report: {shown(str(html_path))}"
    if result.failed:
        text += f"; {len(result.failed)} image(s) skipped (see stderr and the report)"
    echo(text)
    return 1 if result.failed else 0
