"""``camscope layers MODEL``: the layers a CAM can be taken from, and the automatic choice.

A dry forward on a zero image of the model's input size (or ``--size``) lists every module that
outputs a spatial feature map with its shape, stride and conv index, marks the layer ``--layer
auto`` picks and the first / middle / last conv (``--layer first|middle|last``), and prints the
preprocessing the model expects.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import ModelOptions, add_model_arguments, echo, format_table, positive_int


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "layers",
        help="list a model's candidate layers and the automatic choice",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    add_model_arguments(parser, positional=True)
    parser.add_argument(
        "--size",
        type=positive_int,
        default=None,
        metavar="N",
        help="side of the square dummy input (default: the model's input size)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    options = ModelOptions.from_args(args)
    if options.weights is None:  # the layout does not depend on the weights: skip loading them
        options = ModelOptions(options.name, None, options.trust_checkpoint, True, options.device)
    return show_layers(options, size=args.size, as_json=bool(args.json))


def show_layers(options: ModelOptions, *, size: int | None = None, as_json: bool = False) -> int:
    """Print the candidate layers of the model ``options`` describe; returns the exit code."""
    import torch

    from .. import layers as layer_lib
    from ._common import load_model

    model, spec, device = load_model(options)
    height, width = (size, size) if size else spec.input_size
    dummy = torch.zeros(1, 3, height, width, device=device)
    infos = layer_lib.list_layers(model, dummy)
    auto = layer_lib.auto_layer(model, dummy)
    convs = [info.name for info in infos if info.conv_index is not None]
    marks: dict[str, list[str]] = {auto: ["auto"]}
    if convs:
        for tag, name in (
            ("first", convs[0]),
            ("middle", convs[len(convs) // 2]),
            ("last", convs[-1]),
        ):
            marks.setdefault(name, []).append(tag)
    if as_json:
        record = {
            "model": spec.name,
            "input": [3, height, width],
            "auto": auto,
            "first": convs[0] if convs else None,
            "middle": convs[len(convs) // 2] if convs else None,
            "last": convs[-1] if convs else None,
            "layers": [
                {
                    "index": i.index,
                    "name": i.name,
                    "type": i.kind,
                    "shape": list(i.shape),
                    "stride": i.stride,
                    "conv_index": i.conv_index,
                    "marks": marks.get(i.name, []),
                }
                for i in infos
            ],
            "spec": spec.to_dict(),
        }
        echo(json.dumps(record, indent=2))
        return 0
    rows = [
        [
            i.index,
            i.name,
            i.kind,
            "x".join(str(d) for d in i.shape),
            f"{i.stride:g}",
            "" if i.conv_index is None else i.conv_index,
            ", ".join(marks.get(i.name, [])),
        ]
        for i in infos
    ]
    echo(f"{spec.name}: {len(infos)} layers with a spatial output for a 3x{height}x{width} input")
    echo(format_table(["#", "layer", "type", "output (CxHxW)", "stride", "conv", "choice"], rows))
    echo()
    echo(f"--layer auto -> {auto}")
    if convs:
        echo(
            f"--layer first / middle / last -> {convs[0]} / {convs[len(convs) // 2]} / {convs[-1]}"
        )
    echo()
    echo("preprocessing:")
    for key, value in spec.to_dict().items():
        if key == "class_names":
            value = f"{len(value)} names" if value else "none"
        echo(f"  {key}: {value}")
    return 0
