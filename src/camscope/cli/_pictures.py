"""The picture options of ``camscope explain`` (what is drawn and written for each image)."""

from __future__ import annotations

import argparse

from . import options


def add_picture_arguments(parser: argparse.ArgumentParser) -> None:
    """What is drawn and written for each image (``--format png``)."""
    group = parser.add_argument_group("pictures and files")
    options.add(group, "colormap", "alpha")
    png_only = [
        group.add_argument(
            "--max-side",
            type=options.non_negative_int,
            default=1024,
            metavar="PX",
            help="longer side of the overlay files (default 1024; 0: the image's own size)",
        ),
        group.add_argument("--no-grid", action="store_true", help="do not write <stem>.grid.png"),
        group.add_argument(
            "--no-overlays", action="store_true", help="do not write one overlay file per method"
        ),
        group.add_argument(
            "--image-format",
            choices=("png", "jpg", "webp"),
            default="png",
            help="format of the overlay and grid files (default png)",
        ),
        group.add_argument(
            "--class-scale",
            choices=("shared", "own"),
            default="shared",
            help="top-k grids: one scale per method across the classes (default) or each map on "
            "its own",
        ),
        group.add_argument(
            "--save-npy", action="store_true", help="also save each map as float32 .npy in [0, 1]"
        ),
        group.add_argument(
            "--concepts",
            action="store_true",
            help="also write <stem>.concepts.png: Deep Feature Factorization's concepts of the "
            "(first) layer, each map with the classes it scores highest (-O num_concepts=K, "
            "default 5)",
        ),
        group.add_argument(
            "--npy-size",
            choices=("layer", "model", "image"),
            default="model",
            help="resolution of the .npy maps: the layer's, the model input's (default) or the image's",
        ),
    ]
    # a data-set job refuses these rather than ignore them (its overlays are --save-png's, its
    # maps are in the shards)
    parser.set_defaults(_png_only={action.dest: action.default for action in png_only})
