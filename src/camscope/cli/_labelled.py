"""The data options of the commands that read labelled data (``audit``, ``embed``, ``failures``,
``adversarial``; ``evaluate`` shares ``--images``, ``--class-map``, ``--unmapped`` and
``--allow-outside-paths``), and the one way they become a
:func:`camscope.data.read.read_data` call.

Nothing here imports torch (``camscope --help`` stays fast).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ._common import add_max_pixels_argument, add_method_option_arguments

_DATA_HELP = """\
DATA: class folders (DIR/<class>/*.jpg: ImageNet class names, WordNet lemmas or synset ids such as
n02123045 for ImageNet models, the run's class names for models from `camscope train`), annotated
boxes (a .csv with file,class,x0,y0,x1,y1, a COCO .json or VOC .xml, or a folder in a common
layout: *.csv | *.json | *.xml, Annotations/*.xml, annotations/xmls/*.xml + images/,
annotations/*.json; the largest object's class is the image's class), a .csv/.parquet list with
path and label columns, cifar10:DIR | cifar100:DIR, or builtin:N[:SEED]. Object masks, where
given, are masks/<image stem>.png beside the annotations.
"""

_UNMAPPED_HELP = {
    "error": "error (list them all)",
    "fail": "error (annotations: stop and list them; class folders: their images fail, exit 1)",
    "skip": "skip (leave out the objects or class folders they label; counted)",
    "keep": "keep (embed them, judge no prediction)",
}


def add_data_arguments(
    parser: argparse.ArgumentParser,
    *,
    unmapped: tuple[str, ...],
    unmapped_folders: str = "error",
    data: bool = True,
) -> None:
    """``--data`` (unless ``data`` is False), ``--images``, ``--class-map``, ``--unmapped``
    (``unmapped[0]`` is the default) and ``--allow-outside-paths``.

    ``unmapped_folders`` is what ``--unmapped error`` does to class folders that name no model
    class (:attr:`camscope.data.spec.DataOptions.unmapped_folders`); it only changes the
    help here, :func:`read_data` takes it too."""
    if data:
        parser.add_argument(
            "--data", required=True, metavar="DIR|FILE|builtin:N", help="the labelled images"
        )
    parser.add_argument(
        "--images", metavar="DIR", default=None, help="the folder that holds the annotated images"
    )
    parser.add_argument(
        "--class-map",
        metavar="FILE",
        default=None,
        help='JSON {"data-set label or folder name": ["model class name or index", ...]}; a hit '
        "on any listed class counts as correct; [] marks a label as unmapped",
    )
    described = [
        _UNMAPPED_HELP["fail" if u == "error" and unmapped_folders == "fail" else u]
        for u in unmapped
    ]
    parser.add_argument(
        "--unmapped",
        choices=unmapped,
        default=unmapped[0],
        help=f"labels that are no model class: {', '.join(described)}; default {unmapped[0]}",
    )
    parser.add_argument(
        "--allow-outside-paths",
        action="store_true",
        help="accept image paths in annotations that leave the data folder (../x.jpg, /abs/x.jpg)",
    )


def add_run_arguments(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int],
    *,
    method_options: bool = True,
) -> argparse.ArgumentParser:
    """The options these commands end with: ``--multilabel``, ``--max-pixels``, the method
    options (``--option``, unless ``method_options`` is False) and ``--no-progress``; ``run``
    handles the command."""
    from ._model import add_multilabel_argument

    add_multilabel_argument(parser)  # every command here classifies its images
    add_max_pixels_argument(parser)
    if method_options:
        add_method_option_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def one_method(text: str, what: str) -> str:
    """The single method ``--method`` names; more than one is a usage error saying ``what`` the
    method is for."""
    from ..errors import UsageError
    from ._common import parse_methods

    methods = parse_methods(text)
    if len(methods) != 1:
        raise UsageError(f"--method takes one method ({what}); got {', '.join(methods)}")
    return methods[0]


def data_help() -> str:
    """The DATA paragraph of the commands' epilogs."""
    return _DATA_HELP


def read_data(
    args: argparse.Namespace,
    spec: Any,
    data: str | None = None,
    *,
    command: str,
    unmapped_folders: str = "error",
    need: str = "labels",
) -> Any:
    """:func:`camscope.data.read.read_data` of ``data`` (default ``--data``) with the command's
    options (``need``: what the command needs of each image); ``--limit``, where the command has
    it, keeps the first N images. What the user should know about the data (skipped folders,
    mapped labels) goes to stderr, one line each, prefixed with ``camscope COMMAND:``."""
    from ..data.read import read_data as read
    from ..data.spec import DataOptions

    size = int(spec.input_size[0]) if spec.input_size[0] == spec.input_size[1] else 224
    options = DataOptions(
        args.images, args.class_map, args.unmapped, unmapped_folders, bool(args.allow_outside_paths)
    )
    found = read(
        args.data if data is None else data,
        spec.class_names,
        options,
        need=need,
        seed=args.seed,
        size=size,
    )
    if getattr(args, "limit", None):
        found.items = found.items[: args.limit]
    for line in found.notes:
        sys.stderr.write(f"camscope {command}: {line}\n")
    return found
