"""``camscope failures``: explain every mistake of a model on labelled data.

For every misclassified image this writes ``<stem>.failure.png`` (the map for the predicted and the
true class, Guided Grad-CAM for both, the counterfactual map of the predicted class) and measures
the overlap of the two maps; then ``failures.json`` (most confident mistake first), ``per_class.csv``,
``confusion.png`` and a self-contained ``report.html``. Unreadable images and class folders that
name no class of the model are reported and skipped; the exit code is then 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import options, values
from ._common import command_parser, echo

_HELP = "explain every misclassified image of labelled data (failure-mode report)"
_EPILOG = (
    options.DATA_HELP
    + """
examples:
  camscope failures --data pets/ --out out/failures
  camscope failures --data builtin:40 --method gradcam++ --layer blocks.5
  camscope failures --model runs/pets --data pets/val --out out/pets-failures
"""
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(subparsers, "failures", _HELP, __doc__, _EPILOG)
    options.add(
        parser,
        *options.MODEL,
        "out",
        "method",
        "layer",
        "batch_size",
        "seed",
        *options.LABELLED,
        "colormap",
        "alpha",
        "multilabel",
        "max_pixels",
        "option",
        "no_progress",
        out={"default": Path("out/failures")},
        method={
            "help": "map for the predicted and the true class, one method (default gradcam; see "
            "`camscope methods`)"
        },
        batch_size={"default": 8, "help": "images per pass (default 8)"},
        data={"required": True},
        unmapped=options.unmapped_help(("error", "skip"), folders="fail"),
    )
    parser.add_argument(
        "--embed",
        type=options.non_negative_int,
        default=100,
        metavar="N",
        help="grids embedded in report.html, most confident mistakes first (default 100)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from ..data.progress import Progress
    from ..diagnosis.failures import FailureSettings, diagnose_failures

    method = values.one_method(args, "the map compared for the two classes")
    bar = Progress(label="camscope failures", enabled=not args.no_progress)
    settings = FailureSettings(
        method=method,
        layer=values.layer_spec(args.layer),
        method_options=values.method_options(args),
        progress=bar,
        on_skip=bar.skipped,
        **values.same_named(args, "batch_size colormap alpha max_pixels embed multilabel"),
    )
    model, spec = load_checked(args, settings.layer)
    data = values.read_labelled(args, spec, command="failures", unmapped_folders="fail")
    with bar:
        result = diagnose_failures(model, spec, data, args.out, settings)
    summary, accuracy = result.summary, result.summary["accuracy"]
    text = f"{summary['classified']} image(s) classified"
    if accuracy is not None:
        text += f", accuracy {100 * accuracy:.1f}%"
    text += f", {len(summary['failures'])} misclassified; report: {result.report}"
    if result.errors:
        text += f"; {len(result.errors)} skipped (see stderr and failures.json)"
    echo(text)
    return 1 if result.errors else 0


def load_checked(args: argparse.Namespace, layer: str | list[str]) -> tuple[Any, Any]:
    """Check ``--colormap``, create ``--out``, load the model and resolve ``layer`` on an
    example input (a bad layer is a usage error before any work); ``(model, spec)`` (failures
    and adversarial)."""
    from .. import viz
    from ..core.layers import resolve_layers
    from ..outputs import prepare_output

    viz.check_colormap(args.colormap)
    prepare_output(args.out)
    model, spec, device, _ = values.model_recipe(args).load(hints="cli")
    resolve_layers(model, layer, spec.example_input(device))
    return model, spec
