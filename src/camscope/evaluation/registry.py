"""The metric registry: ``@register_metric("family", columns=[...])`` records a metric family.

A family is one function from a :class:`~camscope.evaluation.context.BatchContext` (one batch:
the maps of every method at every class it needs, the boxes at the input size, the explained
classes, the :class:`~camscope.core.prediction.Prediction`, a counted ``forward`` for extra
passes, the :class:`~camscope.evaluation.config.EvalConfig` and the model's normalisation) to
its values per method and image. The registry holds what the rest of ``camscope evaluate``
needs to know about it: its leaderboard columns (title, better direction, interval kind), the
other row keys it writes, a one-line summary, whether ``--metrics`` selects it by default and
where it stands in the leaderboard. ``--metrics`` and its help, :class:`EvalConfig`'s check,
:func:`camscope.evaluation.summary.summarise` (and so the report and ``results.csv``) and the
table in ``docs/evaluation.md`` (:func:`markdown_table`) all read it, so adding a metric is one
file in :mod:`camscope.evaluation.families` plus its test.

This module imports no torch (nor do the family modules at import time), so the CLI's help
can list the families without loading torch.

Example:
    >>> [f.name for f in metric_families()][:3]
    ['loc', 'pointing', 'energy']
    >>> metric_column("avg_drop").title
    'Average Drop %'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import UsageError, closest

#: What a family returns: method -> one dict per image of the row keys it sets (absent: not
#: measured for that image, e.g. discrimination on one-object images).
Scores = dict[str, list[dict[str, Any]]]
SCOPES = ("image", "model")


@dataclass(frozen=True)
class MetricColumn:
    """A leaderboard column: its row key, title, better direction and family.

    Attributes:
        percent: the values are percentages (0-100).
        binary: every image scores 0 or 100 (a hit or a miss), so the column is a proportion and
            gets a Wilson interval; the other columns get a bootstrap interval of the mean
            (:mod:`camscope.evaluation.summary`).
        relative: computed from the class probability ratio ``O / Y``; images whose explained
            class has ``Y`` below :data:`camscope.evaluation.summary.LOW_CONFIDENCE_P` are left
            out of it.

    Win % is not in the rows: the summary computes it per image across methods.
    """

    key: str
    title: str
    higher_is_better: bool
    family: str = ""
    percent: bool = False
    binary: bool = False
    relative: bool = False

    def info(self) -> dict[str, Any]:
        """What ``results.json`` records of the column (``column_info``)."""
        return {k: v for k, v in asdict(self).items() if k != "relative"}


@dataclass(frozen=True)
class MetricFamily:
    """A registered metric family (see :func:`register_metric`)."""

    name: str
    fn: Callable[..., Any]
    columns: tuple[MetricColumn, ...]
    extras: tuple[str, ...]
    summary: str
    default: bool
    order: int
    scope: str = "image"


_FAMILIES: dict[str, MetricFamily] = {}


def register_metric(
    name: str,
    *,
    columns: Iterable[MetricColumn] = (),
    extras: Iterable[str] = (),
    summary: str,
    order: int,
    default: bool = False,
    scope: str = "image",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers a metric family under ``name``.

    Args:
        columns: its leaderboard columns, in leaderboard order (their ``family`` is filled in).
        extras: the other row keys the function writes (curves, boxes, intermediate values).
        summary: one line for ``camscope evaluate --help`` and the docs.
        order: where the family stands in ``--metrics all``, the help and the leaderboard (built-in
            families use multiples of 10).
        default: selected when ``--metrics`` is not given.
        scope: ``"image"``: a function of a :class:`~camscope.evaluation.context.BatchContext`
            returning :data:`Scores`, run on every batch; ``"model"``: run once per run by
            :mod:`camscope.evaluation.run` (the sanity check), no columns.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}; got {scope!r}")
    cols = tuple(replace(c, family=name) for c in columns)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _FAMILIES:
            raise ValueError(f"metric family {name!r} is registered twice")
        taken = {k for f in _FAMILIES.values() for k in (*(c.key for c in f.columns), *f.extras)}
        clash = sorted(taken & {*(c.key for c in cols), *extras})
        if clash:
            raise ValueError(f"metric family {name!r}: row key(s) {clash} already registered")
        _FAMILIES[name] = MetricFamily(
            name, fn, cols, tuple(extras), summary, default, order, scope
        )
        return fn

    return decorate


def _load_builtins() -> None:
    from . import families  # noqa: F401  (importing registers every built-in family)


def metric_families() -> list[MetricFamily]:
    """Every registered family, in leaderboard order."""
    _load_builtins()
    return sorted(_FAMILIES.values(), key=lambda f: (f.order, f.name))


def family_names() -> list[str]:
    """The ``--metrics`` names, in leaderboard order."""
    return [f.name for f in metric_families()]


def default_families() -> list[str]:
    """The families ``--metrics`` selects when it is not given."""
    return [f.name for f in metric_families() if f.default]


def metric_family(name: str) -> MetricFamily:
    """The family registered under ``name``; an unknown name is a :class:`UsageError`."""
    _load_builtins()
    if name not in _FAMILIES:
        raise UsageError(
            f"unknown metric family {name!r}; closest: {closest(name, _FAMILIES)}. "
            f"Choose from {', '.join(family_names())}"
        )
    return _FAMILIES[name]


def check_families(names: Sequence[str], option: str = "metrics") -> list[str]:
    """``names`` without repeats, each a registered family (else a :class:`UsageError` naming
    ``option``, the unknown names and the choices)."""
    known = family_names()
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise UsageError(
            f"{option}: unknown family {bad or list(names)!r}; choose from {', '.join(known)} "
            "or 'all'"
        )
    return list(dict.fromkeys(names))


def metric_columns() -> list[MetricColumn]:
    """Every leaderboard column, in leaderboard order."""
    return [c for f in metric_families() for c in f.columns]


def metric_column(key: str) -> MetricColumn:
    """The column with row key ``key``."""
    for column in metric_columns():
        if column.key == key:
            return column
    raise KeyError(key)


def help_lines(width: int = 100) -> list[str]:
    """``name  summary`` per family, wrapped, for ``camscope evaluate --help``."""
    import textwrap

    out = []
    for f in metric_families():
        lines = textwrap.wrap(f.summary, width - 18) or [""]
        out.append(f"  {f.name:<15} {lines[0]}")
        out.extend(" " * 18 + line for line in lines[1:])
    return out


def markdown_table() -> str:
    """The columns as the Markdown table ``docs/evaluation.md`` holds (``tests/test_docs.py``
    checks it): family, column title, row key, better direction, interval."""
    rows = ["| family (`--metrics`) | column | key | better | interval |", "|---|---|---|---|---|"]
    for f in metric_families():
        for c in f.columns:
            better = "higher ↑" if c.higher_is_better else "lower ↓"
            kind = "Wilson" if c.binary else "bootstrap"
            rows.append(f"| `{f.name}` | {c.title} | `{c.key}` | {better} | {kind} |")
        if not f.columns:
            rows.append(f"| `{f.name}` | {f.summary} (once per run) | – | – | – |")
    return "\n".join(rows) + "\n"
