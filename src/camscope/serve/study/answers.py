"""The answers of a human study: appended to ``answers.csv`` one click at a time, and summarised.

Each answer is one CSV row, written, flushed and ``fsync``-ed before the server replies, so an
answer the participant saw accepted survives a crash or a restart. A row cut short by a crash in
the middle of a write (no final newline) is removed when the log is opened again, and said so in
the log; every complete row is kept.

Cells that a spreadsheet would run as a formula are written with a leading ``'`` (OWASP's advice
on CSV injection: a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return),
since participant names and data-set labels come from outside: ``=HYPERLINK(...)`` typed as a name
stays text when ``answers.csv`` is opened in a spreadsheet. Numbers (``-1``, ``+2.5``) are left as
they are, and a cell that starts with ``'`` gets one more, so that :class:`AnswerLog` reads every
cell back exactly as it was given (:func:`restore_cell`).

:func:`summarize` turns the rows into one line per method: for class discrimination the share of
correct answers, for trust the share of decided answers preferring the first model, each with a
95% Wilson score interval (Wilson 1927; :func:`camscope.evaluation.summary.wilson_interval`, the
interval ``camscope evaluate`` gives its hit-or-miss columns), which stays inside [0, 1] for small
samples.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import threading
from pathlib import Path
from typing import Any

from ...evaluation.summary import wilson_interval

log = logging.getLogger(__name__)

COLUMNS = (
    "time",
    "participant",
    "position",
    "trial",
    "kind",
    "image",
    "method",
    "layer",
    "target_class",
    "target_label",
    "options",
    "choice",
    "correct",
    "left_model",
    "right_model",
    "preferred",
    "ms",
    "seed",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralise_cell(text: str) -> str:
    """The cell as written to ``answers.csv``: a leading ``'`` before what a spreadsheet would
    run as a formula (and before a leading ``'``, so that reading back is exact)."""
    if text.startswith("'") or (text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text)):
        return "'" + text
    return text


def restore_cell(text: str) -> str:
    """The inverse of :func:`neutralise_cell`."""
    return text[1:] if text.startswith("'") else text


class AnswerLog:
    """``answers.csv`` of one study folder: read at start, appended one row per answer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.rows: list[dict[str, str]] = []
        self._repair()
        if self.path.exists():
            with self.path.open(newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    if None in row or any(row.get(c) is None for c in COLUMNS):
                        log.warning("%s: skipping a malformed row %r", self.path, row)
                        continue
                    self.rows.append({c: restore_cell(row[c]) for c in COLUMNS})

    def _repair(self) -> None:
        """Drop a last row cut short by a crash (the file does not end with a newline)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as handle:
            data = handle.read()
            if data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            log.warning("%s: removing an incomplete last row %r", self.path, data[keep:][:200])
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())

    def answered(self, participant: str) -> dict[int, dict[str, str]]:
        with self._lock:
            return {int(r["trial"]): r for r in self.rows if r["participant"] == participant}

    def append(self, row: dict[str, Any]) -> dict[str, str]:
        """Write one row and make it durable (flush + fsync) before returning."""
        text = {c: "" if row.get(c) is None else str(row[c]) for c in COLUMNS}
        with self._lock:
            new = not self.path.exists() or self.path.stat().st_size == 0
            with self.path.open("a", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerow({c: neutralise_cell(v) for c, v in text.items()})
                handle.flush()
                os.fsync(handle.fileno())
            self.rows.append(text)
        return text


def summarize(kind: str, rows: list[dict[str, str]], models: list[str]) -> list[dict[str, Any]]:
    """One entry per method (in first-answer order) and one for all methods together.

    class-discrimination: ``n``, ``correct``, ``accuracy`` and its 95% Wilson interval.
    trust: ``n``, ``prefer_a`` / ``prefer_b`` / ``same`` (a = the first ``--model``), and the
    share of decided answers (ties left out) preferring model a with its Wilson interval.
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    groups = [(m, [r for r in rows if r["method"] == m]) for m in methods]
    if len(methods) > 1:
        groups.append(("all", rows))
    out = []
    for method, mine in groups:
        n = len(mine)
        if kind == "class-discrimination":
            hits = sum(r["correct"] == "1" for r in mine)
            counts, share, of = {"correct": hits}, "accuracy", n
        else:  # hits: answers preferring a, of the decided ones
            hits = sum(r["preferred"] == models[0] for r in mine)
            b = sum(r["preferred"] == models[1] for r in mine)
            counts = {"prefer_a": hits, "prefer_b": b, "same": n - hits - b}
            share, of = "share_a", hits + b
        low, high = wilson_interval(hits, of)
        out.append(
            {
                "method": method,
                "n": n,
                **counts,
                share: hits / of if of else math.nan,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return out
