"""``camscope predict IMAGES``: the model's top-k classes and probabilities for each image."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import CamscopeError, TargetError
from . import options, values
from ._common import echo, warn


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "predict",
        help="print the top-k classes of images",
        description="Classify images and print the top-k labels with their probabilities "
        "(softmax; a single-logit model: sigmoid, class 1 positive and 0 negative; --multilabel: "
        "a sigmoid per class).",
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files (also DICOM, NIfTI), folders or URLs (default: the demo images)",
    )
    options.add(parser, *options.MODEL)
    parser.add_argument(
        "--topk",
        type=options.positive_int,
        default=None,
        metavar="K",
        help="classes per image (default 5, or every class of a model with fewer)",
    )
    options.add(parser, "multilabel", "json", "max_pixels", *options.INPUTS, *options.PREPROCESSING)
    return parser


def run(args: argparse.Namespace) -> int:
    """Classify each input with :func:`camscope.core.prediction.classify` (eval mode, any
    model output: a tensor, a tuple, a dict or a ``ModelOutput`` with logits); the
    probabilities are those :func:`camscope.explain` reports (softmax; a single-logit model: its
    sigmoid, ``[1 - p, p]``; ``--multilabel``: a sigmoid per class). Returns 0, or 1 when some
    inputs could not be read."""
    from ..core.prediction import classify
    from ..data.dataset import LoadOptions
    from ..data.inputs import open_images
    from ..data.progress import shown
    from ..pictures.plan import class_label

    items = open_images(args.images).items
    model, spec, device, notes = values.model_recipe(args).load(hints="cli")
    for note in notes:
        warn(f"camscope predict: note: {note}")
    load = LoadOptions(args.max_pixels, args.timeout, args.window)
    records: list[dict[str, Any]] = []
    failed = 0
    for item in items:
        try:
            x = item.prepare(spec, load).x
        except CamscopeError as err:
            failed += 1
            reason = getattr(err, "reason", None) or str(err)
            warn(f"camscope predict: skipped {shown(item.source)}: {shown(reason)}")
            records.append({"source": item.source, "predictions": [], "error": reason})
            continue
        if x.ndim == 3:
            x = x.unsqueeze(0)
        prediction = classify(model, x.to(device), multilabel=args.multilabel)
        classes = prediction.num_classes
        k = args.topk if args.topk is not None else min(5, classes)
        if k > classes:
            raise TargetError(f"--topk {k}: the model has only {classes} classes")
        predictions = [
            {"class": c, "label": class_label(spec, c, prediction.binary), "probability": p}
            for c, p in prediction.ranked(0, k)
        ]
        records.append(
            {
                "source": item.source,
                "probability_kind": prediction.probability_kind,
                "predictions": predictions,
                "error": None,
            }
        )
        if not args.json:
            echo(shown(item.source))
            for rank, pred in enumerate(predictions, 1):
                echo(
                    f"  {rank}. {pred['probability']:6.1%}  {pred['class']:>5}  {shown(pred['label'])}"
                )
    if args.json:
        echo(json.dumps({"model": spec.name, "images": records}, indent=2))
    return 1 if failed else 0
