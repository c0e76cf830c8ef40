"""``results.jsonl``, the rows of an evaluation run (the folder's lock and atomic writes are
:mod:`camscope.outputs`'s).

* :func:`read_rows` reads ``results.jsonl`` tolerating a truncated last line and keeping one row
  per (image, method, layer) (the first), so rows that two writers appended twice count once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..outputs import finite

log = logging.getLogger(__name__)


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """What makes a row unique: image id, method and the layer as asked."""
    return str(row.get("id")), str(row.get("method")), str(row.get("asked_layer", row.get("layer")))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl``: a truncated line from an interrupted run is skipped, and a
    row repeated for the same (image, method, layer) counts once (the first is kept)."""
    return scan_rows(path)[0]


def scan_rows(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """:func:`read_rows` and whether the file is clean (every line a new row, ending in a
    newline), i.e. whether appending to it is safe as it is."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows, True
    text = path.read_text(encoding="utf-8", errors="replace")
    clean = not text or text.endswith("\n")
    seen: set[tuple[str, str, str]] = set()
    dropped = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s: skipping a truncated line (interrupted run)", path)
            clean = False
            continue
        if not isinstance(row, dict) or "id" not in row:
            clean = False
            continue
        key = row_key(row)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        rows.append(row)
    if dropped:
        log.warning("%s: %d repeated row(s) ignored (one row per image and method)", path, dropped)
    return rows, clean and not dropped


def append_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows as JSON lines and push them to disk (a kill loses at most the batch)."""
    with path.open("a", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(finite(r)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
