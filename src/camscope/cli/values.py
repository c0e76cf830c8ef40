"""Parsed options -> the library's plain values: :class:`camscope.models.ModelRecipe`,
``method_options``, a :func:`camscope.data.read.read_data` call; no argparse namespace goes
further. Nothing here imports torch at import time (``camscope --help`` stays fast)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, closest
from ._common import warn
from .options import PREPROCESSING

if TYPE_CHECKING:
    from ..models.recipe import ModelRecipe
    from ..tasks.request import TaskRequest


def split_list(values: str | Sequence[str] | None) -> list[str]:
    """Flatten repeated and comma-separated option values: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    items = [values] if isinstance(values, str) else list(values or [])
    return [part.strip() for value in items for part in value.split(",") if part.strip()]


def same_named(args: argparse.Namespace, names: str) -> dict[str, Any]:
    """The options ``names`` (space-separated) as keywords of the same name: the fields of a
    library settings object that take the parsed value as it is."""
    return {name: getattr(args, name) for name in names.split()}


def layer_spec(values: str | Sequence[str] | None) -> str | list[str]:
    """``--layer`` values -> ``"auto"``, one name, or a list of names."""
    names = split_list(values)
    if not names:
        return "auto"
    return names[0] if len(names) == 1 else names


def one_method(args: argparse.Namespace, what: str) -> str:
    """The single method ``--method`` names; more than one is a usage error saying ``what`` the
    method is for."""
    from ..methods import parse_methods

    methods = parse_methods(args.method)
    if len(methods) != 1:
        raise UsageError(f"--method takes one method ({what}); got {', '.join(methods)}")
    return methods[0]


def model_recipe(args: argparse.Namespace) -> ModelRecipe:
    """The model the options describe, with the preprocessing overrides the command takes."""
    from ..models.recipe import ModelRecipe, SpecOverrides

    return ModelRecipe(
        name=args.model,
        keep_mode=bool(getattr(args, "as_is", False)),
        overrides=SpecOverrides(**preprocessing(args)),
        **same_named(args, "weights trust_checkpoint random_init device"),
    )


def preprocessing(args: argparse.Namespace) -> dict[str, Any]:
    """The preprocessing overrides as given (for the model and ``summary.json``)."""
    return {name: getattr(args, name, None) for name in PREPROCESSING}


_NOT_FROM_THE_COMMAND_LINE = {"progress", "output_adapter"}


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """``-O batch_size=16 -O precision=bfloat16`` -> ``{"batch_size": 16, ...}``: numbers and
    true/false are converted, unknown keys are a usage error naming the known ones."""
    from ..perturbation.options import KNOWN_OPTIONS

    known = sorted(set(KNOWN_OPTIONS) - _NOT_FROM_THE_COMMAND_LINE)
    options: dict[str, Any] = {}
    for text in getattr(args, "option", None) or []:
        key, value = key_value(text, "--option", "batch_size=16")
        if key not in known:
            raise UsageError(
                f"--option: unknown key {key!r}; did you mean {closest(key, known, n=2)}? "
                f"Known keys: {', '.join(known)}"
            )
        options[key] = value
    return options


def explain_settings(args: argparse.Namespace) -> dict[str, Any]:
    """How ``explain`` explains, as the picture job and the data-set job both take it: the
    smoothing flags, ``-O`` method options, eval or as-is mode, multi-label heads and the pass
    budget of ``--method all``."""
    return {
        "method_options": method_options(args),
        "mode": "as-is" if args.as_is else "eval",
        **same_named(args, "aug_smooth eigen_smooth multilabel allow_slow pass_budget"),
    }


def key_value(text: str, option: str, example: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with the value as a bool, int, float or text."""
    key, sep, raw = (part.strip() for part in text.partition("="))
    if not sep or not key:
        raise UsageError(f"{option} {text!r}: expected KEY=VALUE, e.g. {example}")
    if raw.lower() in ("true", "false"):
        return key, raw.lower() == "true"
    for kind in (int, float):
        try:
            return key, kind(raw)
        except ValueError:
            pass
    return key, raw


def read_labelled(
    args: argparse.Namespace,
    spec: Any,
    data: str | None = None,
    *,
    command: str,
    unmapped_folders: str = "error",
    need: str = "labels",
) -> Any:
    """:func:`camscope.data.read.read_data` of ``data`` (default ``--data``) with the data
    options (``need``: what the command needs of each image); ``--limit``, where the command has
    it, keeps the first N images. What the user should know about the data (skipped folders,
    mapped labels) goes to stderr, one line each, prefixed with ``camscope COMMAND:``."""
    from ..data.read import read_data
    from ..data.spec import DataOptions

    size = int(spec.input_size[0]) if spec.input_size[0] == spec.input_size[1] else 224
    options = DataOptions(
        args.images, args.class_map, args.unmapped, unmapped_folders, bool(args.allow_outside_paths)
    )
    found = read_data(
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
        warn(f"camscope {command}: {line}")
    return found


def task_request(args: argparse.Namespace) -> TaskRequest:
    """The task options as a :class:`camscope.tasks.TaskRequest` (checked)."""
    from ..tasks.request import TaskRequest

    request = TaskRequest(
        boxes=tuple(args.box or ()),
        class_name=args.task_class,
        region=None if args.region is None else str(args.region),
        references=tuple(args.reference or ()),
        iou=args.box_iou,
        **same_named(args, "task box_threshold iou_threshold"),
    )
    request.check()
    return request
