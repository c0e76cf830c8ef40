"""The leaderboard: per-image rows into means with bounded 95% intervals, and ``results.csv``.

Rules (each one written in the report too):

* **Intervals stay inside the metric's range.** A column where every image scores 0 or 100 (a
  hit or a miss: localization error, GT-known localization, pointing, Increase in Confidence) is a
  proportion and gets the Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001 recommend
  it over the normal approximation for small n):
  ``(p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``, ``z = 1.96``. Every other column
  gets a percentile bootstrap interval of the mean (2,000 resamples of the images, seed 0, so a
  report is reproducible), which lies within [min, max] of the values. Both are asymmetric, and
  both are SciPy's (``scipy.stats.binomtest(...).proportion_ci``, ``scipy.stats.bootstrap``).
* **Ties are ties.** Win % gives an image's win to every method whose signed drop is within
  :data:`WIN_TIE_TOLERANCE` percentage points of the lowest (shared equally), so identical maps
  that differ by float rounding share their wins: the one rule of
  :func:`camscope.metrics.faithfulness.win_share`.
* **Floors are not contenders.** A method registered in the ``baseline`` family
  (:func:`camscope.core.registry.register_method`, e.g. a random map) is listed in
  ``baselines``: it is never marked best, and the verdict says when the leader is not clear of it.
* **Near-zero probabilities are reported apart.** Average Drop, Increase in Confidence and Win
  divide by the explained class's probability ``Y``; images with ``Y <`` :data:`LOW_CONFIDENCE_P`
  are left out of those columns and counted (a relative change of a probability of 1e-5 says
  nothing about the map).

:func:`verdict` turns the table into a few sentences: which method localises best, which is most
faithful, which fail the sanity check, or "no clear winner" when the best method's 95% interval
overlaps another's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics.faithfulness import WIN_TIE_TOLERANCE, win_share
from ..outputs import write_csv as csv_file
from .registry import metric_columns

Z95 = 1.959963984540054
#: Images whose explained class has a smaller probability are left out of the relative-drop columns.
LOW_CONFIDENCE_P = 1e-3
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``, as fractions in [0, 1]
    (:meth:`scipy.stats.binomtest`'s ``proportion_ci(method="wilson")`` at the confidence that
    ``z`` stands for).

    >>> [round(v, 4) for v in wilson_interval(2, 4)]
    [0.15, 0.85]
    """
    from scipy import stats

    if n <= 0:
        return math.nan, math.nan
    level = 2 * stats.norm.cdf(z) - 1
    ci = stats.binomtest(round(successes), n).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_interval(
    values: Sequence[float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling the values with replacement;
    :func:`scipy.stats.bootstrap`, seeded).

    The bounds are means of resamples, so they lie within ``[min(values), max(values)]``.
    """
    from scipy import stats

    data = np.asarray(values, dtype=np.float64)
    n = data.size
    if n < 2:
        return math.nan, math.nan
    result = stats.bootstrap(
        (data,), np.mean, n_resamples=resamples, confidence_level=level, method="percentile",
        batch=max(1, 4_000_000 // n), rng=np.random.default_rng(seed),
    )  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def interval(values: Sequence[float], binary: bool) -> dict[str, Any]:
    """``{"mean", "low", "high", "n", "interval"}`` of one column of one method.

    Binary columns (values 0 or 100) use :func:`wilson_interval`, the rest
    :func:`bootstrap_interval`; one value has no interval (NaN bounds).
    """
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    if n and binary and all(v in (0.0, 100.0) for v in values):
        low, high = wilson_interval(sum(v == 100.0 for v in values), n)
        return {"mean": mean, "low": 100 * low, "high": 100 * high, "n": n, "interval": "wilson"}
    low, high = bootstrap_interval(values)
    return {"mean": mean, "low": low, "high": high, "n": n, "interval": "bootstrap"}


def win_shares(drops: dict[str, float], tolerance: float = WIN_TIE_TOLERANCE) -> dict[str, float]:
    """One image's win (1) split among the methods whose signed drop is within ``tolerance`` of
    the lowest (:func:`camscope.metrics.faithfulness.win_share` on one image).

    >>> win_shares({"a": 1.0, "b": 1.004, "c": 2.0})
    {'a': 0.5, 'b': 0.5, 'c': 0.0}
    """
    import torch

    shares = win_share(
        {k: torch.tensor([v], dtype=torch.float64) for k, v in drops.items()}, tolerance
    )
    return {k: float(v[0]) for k, v in shares.items()}


def baseline_entries(entries: Sequence[str]) -> list[str]:
    """The leaderboard entries (``method`` or ``method@layer``) of baseline methods."""
    from ..methods import get_method, list_methods

    floors = {m for m in list_methods() if get_method(m).baseline}
    return [e for e in entries if e.split("@")[0] in floors]


def _low_confidence(row: dict[str, Any]) -> bool:
    p = row.get("p_target")
    return p is not None and float(p) < LOW_CONFIDENCE_P


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate rows into the leaderboard: one entry per method (and layer when several) with
    ``mean``, ``low`` / ``high`` (95% interval), ``n`` and ``interval`` for each metric, plus mean
    deletion/insertion curves and the count of low-confidence images."""
    several = len({r["layer"] for r in rows}) > 1

    def key(r: dict[str, Any]) -> str:
        return f"{r['method']}@{r['layer']}" if several else r["method"]

    entries = list(dict.fromkeys(key(r) for r in rows))
    low_ids = {r["id"] for r in rows if _low_confidence(r)}
    by_image: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get("signed_drop") is not None and r["id"] not in low_ids:
            by_image.setdefault(r["id"], {})[key(r)] = float(r["signed_drop"])
    wins: dict[str, list[float]] = {e: [] for e in entries}
    for drops in by_image.values():
        for name, share in win_shares(drops).items():
            wins[name].append(100.0 * share)
    board: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    all_columns = metric_columns()
    for e in entries:
        mine = [r for r in rows if key(r) == e]
        stats: dict[str, Any] = {}
        for col in all_columns:
            if col.key == "win":  # across methods, from each image's signed drops
                vals = wins[e]
            else:
                usable = [r for r in mine if r.get(col.key) is not None]
                if col.relative:
                    usable = [r for r in usable if r["id"] not in low_ids]
                vals = [float(r[col.key]) for r in usable]
            if vals:
                stats[col.key] = interval(vals, col.binary)
        board[e] = stats
        for mode in ("deletion", "insertion"):
            cs = [r[f"{mode}_curve"] for r in mine if r.get(f"{mode}_curve")]
            if cs:
                curves.setdefault(e, {})[mode] = np.mean(np.array(cs), axis=0).round(5).tolist()
    columns = [c.key for c in all_columns if any(c.key in board[e] for e in entries)]
    first = (rows[0]["method"], rows[0]["layer"]) if rows else None
    top1 = [bool(r.get("top1_correct")) for r in rows if (r["method"], r["layer"]) == first]
    drop_cols = [c.key for c in all_columns if c.relative and c.key in columns]
    return {
        "leaderboard": board,
        "columns": columns,
        "column_info": {c.key: c.info() for c in all_columns if c.key in columns},
        "baselines": baseline_entries(entries),
        "curves": curves,
        "images": len({r["id"] for r in rows}),
        "top1_accuracy": 100.0 * sum(top1) / len(top1) if top1 else None,
        "low_confidence": {
            "threshold": LOW_CONFIDENCE_P,
            "images": len(low_ids) if drop_cols else 0,
            "columns": drop_cols,
        },
        "win_tie_tolerance": WIN_TIE_TOLERANCE,
    }


def column_decimals(summary: dict[str, Any], key: str) -> int:
    """Decimals a column is printed with: 1 when any of its means or bounds reaches 1 in
    magnitude (percentages, counts), else 3 (AUCs, correlations, IoU)."""
    found = [stats[key] for stats in summary["leaderboard"].values() if key in stats]
    values = [s[k] for s in found for k in ("mean", "low", "high") if k in s]
    return 1 if any(abs(float(v)) >= 1 for v in values) else 3  # NaN is not >= 1


def display(value: float, decimals: int = 1) -> str:
    """A number as the report prints it."""
    return "–" if math.isnan(value) else f"{value:.{decimals}f}"


def shown(stats: dict[str, Any], decimals: int) -> str:
    """``mean [low, high]`` (the 95% interval), or the mean alone when there is no interval."""
    mean = stats["mean"]
    low, high = stats.get("low", math.nan), stats.get("high", math.nan)
    if math.isnan(low) or math.isnan(high):
        return display(mean, decimals)
    return f"{display(mean, decimals)} [{display(low, decimals)}, {display(high, decimals)}]"


def best_entries(summary: dict[str, Any], key: str) -> set[str]:
    """Every entry whose mean, as printed, equals the best one's (ties are all best); baselines
    (floors) are never best."""
    board, floors = summary["leaderboard"], set(summary.get("baselines") or ())
    vals = {n: board[n][key]["mean"] for n in board if key in board[n] and n not in floors}
    vals = {n: v for n, v in vals.items() if not math.isnan(v)}
    if not vals:
        return set()
    higher = summary["column_info"][key]["higher_is_better"]
    target = max(vals.values()) if higher else min(vals.values())
    places = column_decimals(summary, key)
    return {n for n, v in vals.items() if display(v, places) == display(target, places)}


LOCALIZATION_COLUMNS = ("energy", "pointing", "gt_known_loc", "iou", "loc_error_top1")
FAITHFULNESS_COLUMNS = (
    "insertion",
    "deletion",
    "avg_drop",
    "road_lerf",
    "road_morf",
    "occlusion_rho",
)


def _names(items: Sequence[str], limit: int = 5) -> str:
    items = list(items)
    if len(items) > limit:
        items = [*items[:limit], f"{len(items) - limit} more"]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _aspect(summary: dict[str, Any], candidates: Sequence[str], doing: str) -> str | None:
    key = next((c for c in candidates if c in summary["columns"]), None)
    if key is None:
        return None
    board, info = summary["leaderboard"], summary["column_info"][key]
    best = sorted(best_entries(summary, key), key=list(board).index)
    if not best:
        return None
    title = f"{info['title']} {'↑' if info['higher_is_better'] else '↓'}"
    lead = board[best[0]][key]
    text = shown(lead, column_decimals(summary, key))
    floors = [n for n in summary.get("baselines") or () if key in board[n]]
    contenders = [n for n in board if key in board[n] and n not in floors]
    if len(contenders) == 1:
        line = f"{doing} ({title}): only {best[0]} was evaluated ({text}); nothing to compare."
    elif len(best) > 1:
        line = f"{doing} ({title}): no clear winner; {_names(best)} tie at {text}."
    elif math.isnan(lead["low"]):
        line = f"{doing} ({title}): no clear winner; {best[0]} leads but too few images for an interval."
    else:
        overlap = [n for n in contenders if n != best[0] and _overlap(board[n][key], lead)]
        line = (
            f"{doing} ({title}): no clear winner; {best[0]} leads with {text}, but the 95% "
            f"intervals of {_names(overlap)} overlap it."
            if overlap
            else f"{doing} ({title}): {best[0]}, {text}, clear of every other method's 95% interval."
        )
    return line + _floor_note(summary, key, best[0], floors)


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return not (a["high"] < b["low"] or a["low"] > b["high"])


def _floor_note(summary: dict[str, Any], key: str, leader: str, floors: Sequence[str]) -> str:
    """What the baselines (floors) say about the leader: clear of them or not."""
    if not floors:
        return ""
    board, higher = summary["leaderboard"], summary["column_info"][key]["higher_is_better"]
    lead = board[leader][key]

    def clear(floor: dict[str, Any]) -> bool:
        if any(math.isnan(v) for v in (lead["low"], lead["high"], floor["low"], floor["high"])):
            return False
        return lead["low"] > floor["high"] if higher else lead["high"] < floor["low"]

    stuck = [f for f in floors if not clear(board[f][key])]
    if not stuck:
        return f" {leader} is clear of the floor ({_names(floors)})."
    places = column_decimals(summary, key)
    level = "; ".join(f"{f} {shown(board[f][key], places)}" for f in stuck)
    return (
        f" {leader} is not clear of the floor ({level}): on this column its maps may say no "
        "more than chance."
    )


def verdict(summary: dict[str, Any]) -> list[str]:
    """A few sentences that answer "which method should I trust for this model and data?".

    Localization uses the first available of :data:`LOCALIZATION_COLUMNS`, faithfulness the first
    of :data:`FAITHFULNESS_COLUMNS`; a method is named best only when its 95% interval overlaps no
    other method's ("no clear winner" otherwise, or when the best values tie). Sanity lists the
    methods that fail the cascading randomization test.
    """
    aspects = [(LOCALIZATION_COLUMNS, "Localizes best"), (FAITHFULNESS_COLUMNS, "Most faithful")]
    lines = [line for keys, doing in aspects if (line := _aspect(summary, keys, doing))]
    sanity = summary.get("sanity") or {}
    for layer, data in (sanity.get("layers") or {}).items():
        failed = [m for m, ok in data.get("passed", {}).items() if not ok]
        if failed:
            lines.append(
                f"Fails the sanity check at {layer}: {_names(failed)} (maps barely change when "
                "the weights are randomised; do not trust them for this model)."
            )
        else:
            lines.append(f"Sanity check at {layer}: every method passes.")
    return lines


def write_csv(path: Path, summary: dict[str, Any]) -> None:
    """``results.csv``: one row per method (/layer), columns ``<metric>``, ``<metric>_low`` and
    ``<metric>_high`` (the 95% interval), and ``n``."""
    cols = summary["columns"]
    rows: list[list[Any]] = [
        ["method", *[x for c in cols for x in (c, f"{c}_low", f"{c}_high")], "n"]
    ]
    for name, stats in summary["leaderboard"].items():
        row: list[Any] = [name]
        n = 0
        for c in cols:
            s = stats.get(c)
            if not s:
                row += ["", "", ""]
                continue
            row += [
                f"{s['mean']:.4f}",
                *("" if math.isnan(s[b]) else f"{s[b]:.4f}" for b in ("low", "high")),
            ]
            n = max(n, s["n"])
        rows.append([*row, n])
    csv_file(path, rows)
