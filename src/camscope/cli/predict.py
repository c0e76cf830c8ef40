"""``camscope predict IMAGES``: the model's top-k classes and probabilities for each image."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

from ..data.progress import shown
from ..errors import CamscopeError, TargetError
from ._common import add_max_pixels_argument, echo, positive_int, warn
from ._inputs import add_input_arguments
from ._model import (
    ExplainMode,
    ModelOptions,
    PreprocessingOptions,
    add_model_arguments,
    add_multilabel_argument,
    add_preprocessing_arguments,
)


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
    add_model_arguments(parser)
    parser.add_argument(
        "--topk",
        type=positive_int,
        default=None,
        metavar="K",
        help="classes per image (default 5, or every class of a model with fewer)",
    )
    add_multilabel_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_max_pixels_argument(parser)
    add_input_arguments(parser)
    add_preprocessing_arguments(parser)
    parser.set_defaults(run=run)
    return parser


@dataclass(frozen=True)
class PredictOptions:
    images: list[str]
    model: ModelOptions
    topk: int | None = None  # None: 5, or all classes of a model with fewer
    max_pixels: int | None = None
    as_json: bool = False
    preprocessing: PreprocessingOptions = field(default_factory=PreprocessingOptions)
    timeout: float | None = None
    window: tuple[float, float] | None = None
    multilabel: bool = False


def run(args: argparse.Namespace) -> int:
    options = PredictOptions(
        images=list(args.images),
        model=ModelOptions.from_args(args),
        topk=args.topk,
        max_pixels=args.max_pixels,
        as_json=bool(args.json),
        preprocessing=PreprocessingOptions.from_args(args),
        timeout=args.timeout,
        window=args.window,
        multilabel=ExplainMode.from_args(args).multilabel,
    )
    return predict_images(options)


def predict_images(options: PredictOptions) -> int:
    """Classify each input with :func:`camscope.core.prediction.classify` (eval mode, any
    model output: a tensor, a tuple, a dict or a ``ModelOutput`` with logits); the
    probabilities are those :func:`camscope.explain` reports (softmax; a single-logit model: its
    sigmoid, ``[1 - p, p]``; ``multilabel``: a sigmoid per class). Returns 0, or 1 when some
    inputs could not be read."""
    from ..core.prediction import classify
    from ..data.dataset import LoadOptions
    from ..data.inputs import open_images
    from ..pictures.plan import class_label
    from ._model import apply_preprocessing, load_model

    items = open_images(options.images).items
    model, spec, device = load_model(options.model)
    spec, notes = apply_preprocessing(model, spec, options.preprocessing)
    for note in notes:
        warn(f"camscope predict: note: {note}")
    load = LoadOptions(options.max_pixels, options.timeout, options.window)
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
        prediction = classify(model, x.to(device), multilabel=options.multilabel)
        classes = prediction.num_classes
        k = options.topk if options.topk is not None else min(5, classes)
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
        if not options.as_json:
            echo(shown(item.source))
            for rank, pred in enumerate(predictions, 1):
                echo(
                    f"  {rank}. {pred['probability']:6.1%}  {pred['class']:>5}  {shown(pred['label'])}"
                )
    if options.as_json:
        echo(json.dumps({"model": spec.name, "images": records}, indent=2))
    return 1 if failed else 0
