"""``camscope embed``: globally pooled layer features projected to 2-D, with silhouette and k-NN
accuracy per layer, so how class separation grows with depth is a number.

Writes ``embeddings.json`` (layers in depth order), one ``embed_<layer>.png`` scatter per layer
and a self-contained ``embeddings.html`` with thumbnails on hover. Exit status: 0 all images
embedded, 1 some could not be read (the others are embedded), 2 usage error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import options, values
from ._common import command_parser, echo

DEFAULT_LAYERS = "input,first,middle,last"

_HELP = "layer embeddings: pooled features in 2-D, silhouette and k-NN accuracy per layer"
_DESCRIPTION = (
    "Pool the features of chosen layers for every image, project them to 2-D (PCA or "
    "UMAP), and measure per layer how well they separate the classes."
)
_EPILOG = (
    options.DATA_HELP
    + """
--layers: comma list of 'input' (the pooled input: the mean colour, a baseline), first, middle,
last (the first, middle and last conv layer), auto, conv:N or module names (camscope layers MODEL).

examples:
  camscope embed --data pets/ --out out/embed
  camscope embed --model out/run --data out/bias/test --layers input,first,middle,last
  camscope embed --data builtin:80 --layers layer2,layer4 --projection umap --out out/umap
"""
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(subparsers, "embed", _HELP, _DESCRIPTION, _EPILOG)
    options.add(
        parser,
        *options.MODEL,
        *options.LABELLED,
        "layer",
        "out",
        "batch_size",
        "limit",
        "seed",
        "multilabel",
        "max_pixels",
        "no_progress",
        data={"required": True},
        layer={"help": f"layers, repeatable or comma list (default {DEFAULT_LAYERS})"},
        out={"default": Path("out/embed")},
        batch_size={"default": 32, "help": "images per pass (default 32)"},
        seed={"help": "seed of builtin:N and of UMAP (default 0)"},
        unmapped=options.unmapped_help(("keep", "skip", "error")),
    )
    parser.add_argument("--projection", choices=("pca", "umap"), default="pca")
    parser.add_argument(
        "--k",
        type=options.positive_int,
        default=5,
        help="neighbours of the k-NN accuracy (default 5)",
    )
    parser.add_argument(
        "--thumbnails",
        type=options.non_negative_int,
        default=2000,
        metavar="N",
        help="images with a hover thumbnail in the HTML (default 2000)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from ..data.progress import Progress
    from ..embeddings.report import write_embeddings
    from ..embeddings.run import embed_dataset
    from ..errors import UsageError

    layers = values.split_list(args.layer or [DEFAULT_LAYERS])
    if not layers:
        raise UsageError(f"--layers is empty; e.g. --layers {DEFAULT_LAYERS}")
    model, spec, _, _ = values.model_recipe(args).load(hints="cli")
    data = values.read_labelled(args, spec, command="embed")
    if not data.items:
        raise UsageError(f"--data {args.data!r} holds no images to embed")
    with Progress(label="camscope embed", enabled=not args.no_progress) as bar:
        result = embed_dataset(
            model,
            spec,
            data,
            layers,
            progress=bar,
            on_skip=bar.skipped,
            **values.same_named(
                args, "projection k batch_size seed thumbnails max_pixels multilabel"
            ),
        )
    settings = {"model": spec.name, "data": args.data, "layers": layers, "k": args.k}
    paths = write_embeddings(result, args.out, settings, title=f"camscope embed: {spec.name}")
    summary = ", ".join(
        f"{name} {layer.silhouette:.2f}" if layer.silhouette is not None else f"{name} –"
        for name, layer in result.layers.items()
    )
    echo(f"{len(result.ids)} images embedded; silhouette per layer: {summary}; {paths['html']}")
    return 1 if result.failed else 0
