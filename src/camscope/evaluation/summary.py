"""The leaderboard: per-image rows into means with confidence intervals, and ``results.csv``."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metrics import faithfulness as fm
from .config import COLUMN_BY_KEY, COLUMNS, EvalConfig


def _ci(values: list[float]) -> tuple[float, float, int]:
    """Mean and half-width of a normal-approximation 95% confidence interval (1.96 s / sqrt(n))."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan, 1
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, 1.96 * math.sqrt(var / n), n


def summarise(rows: list[dict[str, Any]], config: EvalConfig) -> dict[str, Any]:
    """Aggregate rows into the leaderboard: one entry per method (and layer when several) with
    ``mean``, ``ci95`` (half-width) and ``n`` for each metric, plus mean deletion/insertion curves.

    Win %: per image, among the evaluated method/layer entries, the share of the lowest signed drop
    (ties split)."""
    several = len({r["layer"] for r in rows}) > 1

    def key(r: dict[str, Any]) -> str:
        return f"{r['method']}@{r['layer']}" if several else r["method"]

    entries = sorted({key(r) for r in rows}, key=lambda k: [key(r) for r in rows].index(k))
    # Win shares per image.
    by_image: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get("signed_drop") is not None:
            by_image.setdefault(r["id"], {})[key(r)] = r["signed_drop"]
    wins: dict[str, list[float]] = {e: [] for e in entries}
    for drops in by_image.values():
        names = list(drops)
        shares = fm.win_share({n: torch.tensor([drops[n]]) for n in names})
        for n in names:
            wins[n].append(100.0 * float(shares[n][0]))
    board: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for e in entries:
        mine = [r for r in rows if key(r) == e]
        stats: dict[str, Any] = {}
        for col in COLUMNS:
            vals = (
                wins[e]
                if col.key == "win"
                else [float(r[col.key]) for r in mine if r.get(col.key) is not None]
            )
            if not vals:
                continue
            mean, ci, count = _ci(vals)
            stats[col.key] = {"mean": mean, "ci95": ci, "n": count}
        board[e] = stats
        for mode in ("deletion", "insertion"):
            cs = [r[f"{mode}_curve"] for r in mine if r.get(f"{mode}_curve")]
            if cs:
                curves.setdefault(e, {})[mode] = np.mean(np.array(cs), axis=0).round(5).tolist()
    columns = [c.key for c in COLUMNS if any(c.key in board[e] for e in entries)]
    images = len({r["id"] for r in rows})
    top1 = (
        [bool(r.get("top1_correct")) for r in rows if r["method"] == rows[0]["method"]]
        if rows
        else []
    )
    return {
        "leaderboard": board,
        "columns": columns,
        "column_info": {k: asdict(COLUMN_BY_KEY[k]) for k in columns},
        "curves": curves,
        "images": images,
        "top1_accuracy": 100.0 * sum(top1) / len(top1) if top1 else None,
    }


def write_csv(path: Path, summary: dict[str, Any]) -> None:
    """``results.csv``: one row per method (/layer), columns ``<metric>`` and ``<metric>_ci95``."""
    import csv

    cols = summary["columns"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", *[x for c in cols for x in (c, f"{c}_ci95")], "n"])
        for name, stats in summary["leaderboard"].items():
            row: list[Any] = [name]
            n = 0
            for c in cols:
                s = stats.get(c)
                row += (
                    [
                        f"{s['mean']:.4f}",
                        "" if s is None or math.isnan(s["ci95"]) else f"{s['ci95']:.4f}",
                    ]
                    if s
                    else ["", ""]
                )
                n = max(n, s["n"]) if s else n
            w.writerow([*row, n])
