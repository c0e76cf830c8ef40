"""The data options of the analysis commands (``audit``, ``embed``): ``--data`` plus evaluate's
``--images``, ``--class-map``, ``--unmapped`` and ``--allow-outside-paths``.

Nothing here imports torch (``camscope --help`` stays fast).
"""

from __future__ import annotations

import argparse
from typing import Any

_DATA_HELP = """\
DATA: class folders (DIR/<class>/*.jpg), annotated boxes (a .csv with file,class,x0,y0,x1,y1, a
COCO .json or VOC .xml, or a folder in a common layout: *.csv | *.json | *.xml,
Annotations/*.xml, annotations/xmls/*.xml + images/, annotations/*.json), or builtin:N. Object
masks, where given, are masks/<image stem>.png beside the annotations.
"""


def add_data_arguments(parser: argparse.ArgumentParser, *, unmapped: tuple[str, ...]) -> None:
    """``--data``, ``--images``, ``--class-map``, ``--unmapped`` (``unmapped[0]`` is the default)
    and ``--allow-outside-paths``."""
    parser.add_argument("--data", required=True, metavar="DIR|FILE|builtin:N", help="the images")
    parser.add_argument(
        "--images", metavar="DIR", default=None, help="the folder that holds the annotated images"
    )
    parser.add_argument(
        "--class-map",
        metavar="FILE",
        default=None,
        help='JSON {"data-set label": ["model class name or index", ...]}',
    )
    parser.add_argument(
        "--unmapped",
        choices=unmapped,
        default=unmapped[0],
        help="labels that are no model class: "
        + ", ".join(
            {
                "error": "error (list them all)",
                "skip": "skip (leave their images out)",
                "keep": "keep (embed them, judge no prediction)",
            }[u]
            for u in unmapped
        )
        + f"; default {unmapped[0]}",
    )
    parser.add_argument(
        "--allow-outside-paths",
        action="store_true",
        help="accept image paths in annotations that leave the data folder (../x.jpg, /abs/x.jpg)",
    )


def data_help() -> str:
    """The DATA paragraph of the commands' epilogs."""
    return _DATA_HELP


def read_data(args: argparse.Namespace, spec: Any) -> Any:
    """:func:`camscope.analysis.labelled.read_labelled` with the command's options."""
    from ..analysis.labelled import DataOptions, read_labelled

    size = int(spec.input_size[0]) if spec.input_size[0] == spec.input_size[1] else 224
    options = DataOptions(
        images=args.images,
        class_map=args.class_map,
        unmapped=args.unmapped,
        allow_outside=bool(args.allow_outside_paths),
    )
    data = read_labelled(
        args.data, spec.class_names, options, seed=args.seed, size=size, max_pixels=args.max_pixels
    )
    if args.limit:
        data.inputs = data.inputs[: args.limit]
    return data
