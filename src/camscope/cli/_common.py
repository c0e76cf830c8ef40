"""Helpers shared by the CLI commands: argument types, parsing, tables, output streams.

Nothing here imports torch at module level, so building the parser (``camscope --help``) stays fast.
Functions that need torch or the model stack import it when called.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, closest

if TYPE_CHECKING:
    from torch import Tensor, nn


def echo(text: str = "") -> None:
    """Write one line of command output to stdout."""
    sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    """Write one line to stderr (per-item problems; the command goes on)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _int_at_least(text: str, lowest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"expected a number >= {lowest}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def non_negative_float(text: str) -> float:
    """argparse type: a float >= 0 (not NaN)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number between 0 and 1, got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value}")
    return value


def split_list(values: Iterable[str] | None) -> list[str]:
    """Flatten repeated and comma-separated option values: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    items: list[str] = []
    for value in values or []:
        items.extend(part.strip() for part in value.split(",") if part.strip())
    return items


def parse_methods(text: str) -> list[str]:
    """Comma list of method names (or ``all``) -> canonical registry names, without duplicates.

    ``all`` is every registered method; :func:`methods_within_budget` then drops those whose
    estimated passes per image exceed the budget (unless ``--allow-slow``).
    """
    from ..methods import get_method, list_methods

    names = split_list([text])
    if not names:
        raise UsageError("--method is empty; name at least one method (see `camscope methods`)")
    if means_all(text):
        return list_methods()
    result: list[str] = []
    for name in names:
        canonical = get_method(name).name
        if canonical not in result:
            result.append(canonical)
    return result


def means_all(text: str) -> bool:
    """Whether a ``--method`` value is ``all``."""
    return [n.lower() for n in split_list([text])] == ["all"]


@dataclass
class MethodChoice:
    """The methods a run will use after the pass budget.

    Attributes:
        methods: the methods to run, in the order asked.
        left_out: method -> why it was left out (``-m all`` over the budget).
        estimates: method -> estimated model passes per image beyond the shared ones.
        notes: lines for stderr (methods asked for by name that are over the budget).
    """

    methods: list[str]
    left_out: dict[str, str] = field(default_factory=dict)
    estimates: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def methods_within_budget(
    text: str,
    methods: Sequence[str],
    model: nn.Module,
    layers: str | Sequence[str],
    x: Tensor,
    *,
    targets_per_image: int = 1,
    method_options: Mapping[str, Any] | None = None,
    allow_slow: bool = False,
    budget: int | None = None,
    aug_smooth: bool = False,
) -> MethodChoice:
    """Estimate each method's passes per image (``camscope.methods.estimate_passes``, one dry
    forward) and apply the budget: with ``--method all`` the methods over it are left out (each
    with its reason) unless ``allow_slow``; methods named one by one always run, with a note
    when they are over it. ``x`` is a dummy input of the model's size."""
    from ..core.cost import DEFAULT_PASS_BUDGET, within_budget
    from ..methods import estimate_passes, unsuited_methods

    limit = budget or DEFAULT_PASS_BUDGET
    unsuited = unsuited_methods(model, methods) if means_all(text) else {}
    methods = [m for m in methods if m not in unsuited]
    estimates = estimate_passes(
        model,
        x,
        list(methods),
        layers,
        targets=targets_per_image,
        method_options=method_options,
        aug_smooth=aug_smooth,
    )
    choice = MethodChoice(list(methods), left_out=dict(unsuited), estimates=estimates)
    _, over = within_budget(estimates, limit)
    if not over:
        return choice
    if means_all(text) and not allow_slow:
        choice.methods = [m for m in methods if m not in over]
        choice.left_out.update({m: f"{why}; --allow-slow runs it" for m, why in over.items()})
    else:
        choice.notes = [
            f"{m}: {why}; this will take a while (each pass is a forward of the model)"
            for m, why in over.items()
        ]
    return choice


def parse_layers(values: Sequence[str] | None) -> str | list[str]:
    """``--layer`` values -> ``"auto"``, one name, or a list of names."""
    names = split_list(values)
    if not names:
        return "auto"
    return names[0] if len(names) == 1 else names


# ---------------------------------------------------------------------------------------------
# Options shared by several commands


def add_max_pixels_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-pixels``: the decompression-bomb cap for input images."""
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        metavar="N",
        help="refuse images with more pixels than this (default: PIL's bomb limit, ~89 MP)",
    )


_NOT_FROM_THE_COMMAND_LINE = {"progress", "output_adapter"}


def add_method_option_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--option",
        "-O",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="method option, repeatable: batch_size=16, precision=bfloat16, num_samples=8, "
        "num_channels=32, seed=1, score=channel-softmax, align_corners=true, optimize=false",
    )


def parse_method_options(values: Sequence[str] | None) -> dict[str, Any]:
    """``["batch_size=16", "precision=bfloat16"]`` -> ``{"batch_size": 16, ...}``: numbers and
    true/false are converted, unknown keys are a usage error naming the known ones."""
    from ..perturbation.options import KNOWN_OPTIONS

    known = sorted(set(KNOWN_OPTIONS) - _NOT_FROM_THE_COMMAND_LINE)
    options: dict[str, Any] = {}
    for text in values or []:
        key, sep, raw = (part.strip() for part in text.partition("="))
        if not sep or not key:
            raise UsageError(f"--option {text!r}: expected KEY=VALUE, e.g. batch_size=16")
        if key not in known:
            raise UsageError(
                f"--option: unknown key {key!r}; did you mean {closest(key, known, n=2)}? "
                f"Known keys: {', '.join(known)}"
            )
        options[key] = _option_value(raw)
    return options


def _option_value(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


# ---------------------------------------------------------------------------------------------
# Tables


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned plain-text table with a dashed rule under the header."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
