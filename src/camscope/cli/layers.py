"""``camscope layers MODEL``: the layers a CAM can be taken from, and the automatic choice.

A dry forward on a zero image of the model's input size (or ``--size``) lists every module that
outputs a spatial feature map with its shape, stride and conv index, marks the layer ``--layer
auto`` picks and the first / middle / last conv (``--layer first|middle|last``; for transformers
the first / middle / last block), and prints the preprocessing the model expects.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import options, values
from ._common import echo, format_table


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "layers",
        help="list a model's candidate layers and the automatic choice",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("model", metavar="MODEL", help=options.OPTIONS["model"].kwargs["help"])
    options.add(parser, *options.MODEL[1:])
    parser.add_argument(
        "--size",
        type=options.positive_int,
        default=None,
        metavar="N",
        help="side of the square dummy input (default: the model's input size)",
    )
    options.add(parser, "json")
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the candidate layers of the model; returns the exit code."""
    import dataclasses

    import torch

    from ..core.layer_table import layer_table

    recipe = values.model_recipe(args)
    skipped = recipe.weights is None and not recipe.random_init
    if skipped:  # the layout does not depend on the weights: skip loading them
        recipe = dataclasses.replace(recipe, random_init=True)
    size, as_json = args.size, bool(args.json)
    model, spec, device, _ = recipe.load(hints="cli")  # the spec says the channels it reads
    channels = spec.channels or len(spec.mean)
    height, width = (size, size) if size else spec.input_size
    dummy = torch.zeros(1, channels, height, width, device=device)
    table = layer_table(model, dummy)
    picks = {mark: row.name for row in table for mark in row.marks}
    if as_json:
        record = {
            "model": spec.name,
            "input": [channels, height, width],
            **{mark: picks.get(mark) for mark in ("auto", "first", "middle", "last")},
            "layers": [
                {
                    "index": index,
                    "name": row.name,
                    "type": row.kind,
                    "output_shape": list(row.output_shape),
                    "layout": row.layout,
                    "shape": list(row.spatial),
                    "stride": height / row.spatial[1],
                    "conv_index": row.conv_index,
                    "marks": list(row.marks),
                }
                for index, row in enumerate(table)
            ],
            "spec": spec.to_dict(),
            "weights_skipped": skipped,
        }
        echo(json.dumps(record, indent=2))
        return 0
    rows = [
        [
            index,
            row.name,
            row.kind,
            "x".join(str(d) for d in row.spatial),
            f"{height / row.spatial[1]:g}",
            row.layout,
            "" if row.conv_index is None else row.conv_index,
            ", ".join(row.marks),
        ]
        for index, row in enumerate(table)
    ]
    echo(f"{spec.name}: {len(table)} explainable layers for a {channels}x{height}x{width} input")
    headers = ["#", "layer", "type", "map (CxHxW)", "stride", "layout", "conv", "choice"]
    echo(format_table(headers, rows))
    echo()
    for mark in ("auto", "first", "middle", "last"):
        if mark in picks:
            echo(f"--layer {mark} -> {picks[mark]}")
    echo()
    if skipped:
        echo("weights: not loaded (the layers do not depend on them; the model is built as it")
        echo("would be for --random-init, so the source below says random initialisation)")
    echo("preprocessing:")
    for key, value in spec.to_dict().items():
        if key == "class_names":
            value = f"{len(value)} names" if value else "none"
        echo(f"  {key}: {value}")
    return 0
