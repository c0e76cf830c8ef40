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

from ..errors import UsageError
from ._common import (
    echo,
    parse_layers,
    parse_method_options,
    positive_int,
    split_list,
    unit_float,
)
from ._labelled import add_data_arguments, add_run_arguments, one_method, read_data
from ._model import ExplainMode, ModelOptions, add_model_arguments

_EPILOG = """\
data (--data):
  a folder with one subfolder per class: ImageNet class names, WordNet lemmas or synset ids
  (n02123045) for ImageNet models, the run's class names for models from `camscope train`;
  or annotations as `camscope evaluate` reads them (VOC XML, COCO JSON, CSV boxes, the VOC,
  Oxford-IIIT Pet and COCO folder layouts; the largest object's class is the image's class;
  --images DIR where the images are); or builtin:N (the built-in benchmark). --class-map FILE
  maps data-set labels and folder names onto model classes; --unmapped skip leaves out what maps
  to no class (default: such images fail and are named, exit 1)

examples:
  camscope failures --data pets/ --out out/failures
  camscope failures --data builtin:40 --method gradcam++ --layer blocks.5
  camscope failures --model runs/pets --data pets/val --out out/pets-failures
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "failures",
        help="explain every misclassified image of labelled data (failure-mode report)",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--out", "-o", type=Path, default=Path("out/failures"), metavar="DIR", help="output folder"
    )
    add_map_arguments(
        parser,
        "NAME",
        "map for the predicted and the true class (default gradcam; see `camscope methods`)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        metavar="B",
        help="images per pass (default 8)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of builtin:N (default 0)")
    add_data_arguments(parser, unmapped=("error", "skip"), unmapped_folders="fail")
    add_picture_arguments(parser)
    parser.add_argument(
        "--embed",
        type=int,
        default=100,
        metavar="N",
        help="grids embedded in report.html, most confident mistakes first (default 100)",
    )
    return add_run_arguments(parser, run)


def run(args: argparse.Namespace) -> int:
    from ..data.progress import Progress
    from ..diagnosis.failures import FailureSettings, diagnose_failures

    method = one_method(args.method, "the map compared for the two classes")
    bar = Progress(label="camscope failures", enabled=not args.no_progress)
    settings = FailureSettings(
        method=method,
        layer=parse_layers(split_list(args.layer)),
        batch_size=args.batch_size,
        colormap=args.colormap,
        alpha=args.alpha,
        max_pixels=args.max_pixels,
        method_options=parse_method_options(args.option),
        progress=bar,
        on_skip=bar.skipped,
        embed=max(0, args.embed),
        multilabel=ExplainMode.from_args(args).multilabel,
    )
    model, spec, _ = load_checked(args, settings.layer)
    data = read_data(args, spec, command="failures", unmapped_folders="fail")
    with bar:
        result = diagnose_failures(model, spec, data, args.out, settings)
    summary = result.summary
    accuracy = summary["accuracy"]
    echo(
        f"{summary['classified']} image(s) classified"
        + (f", accuracy {100 * accuracy:.1f}%" if accuracy is not None else "")
        + f", {len(summary['failures'])} misclassified; report: {result.report}"
        + (
            f"; {len(result.errors)} skipped (see stderr and failures.json)"
            if result.errors
            else ""
        )
    )
    return 1 if result.errors else 0


def add_map_arguments(parser: argparse.ArgumentParser, metavar: str, method_help: str) -> None:
    """``--method`` (default gradcam) and ``--layer`` (repeatable, default auto) of failures and
    adversarial."""
    parser.add_argument("--method", "-m", default="gradcam", metavar=metavar, help=method_help)
    parser.add_argument(
        "--layer", "-l", action="append", default=None, metavar="LAYER", help="layer (default auto)"
    )


def add_picture_arguments(parser: argparse.ArgumentParser) -> None:
    """``--colormap`` and ``--alpha`` of the heat-map overlays (failures, adversarial)."""
    parser.add_argument("--colormap", default="inferno", metavar="NAME", help="colour map")
    parser.add_argument("--alpha", type=unit_float, default=0.5, help="heat-map opacity")


def load_checked(args: argparse.Namespace, layer: str | list[str]) -> tuple[Any, Any, Any]:
    """Check ``--colormap``, create ``--out``, load the model and resolve ``layer`` on a dummy
    input (a bad layer is a usage error before any work); ``(model, spec, device)``."""
    import torch

    from .. import viz
    from ..core.layers import resolve_layers
    from ._model import load_model

    viz.check_colormap(args.colormap)
    make_folder(args.out)
    model, spec, device = load_model(ModelOptions.from_args(args))
    resolve_layers(model, layer, torch.zeros(1, 3, *spec.input_size, device=device))
    return model, spec, device


def make_folder(out: Path) -> None:
    """Create the output folder; failing that is a usage error naming it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the output folder {str(out)!r}: {err.strerror}") from None
