"""The output folder of an evaluation run: its lock, atomic writes and ``results.jsonl``.

* :func:`output_lock` holds an operating-system lock (``fcntl.flock``; ``msvcrt.locking`` on
  Windows) on ``--out/.camscope-evaluate.lock`` for the whole run. A second run on the same folder
  gets a :class:`UsageError` at once; the lock belongs to the open file, so it ends with the process
  (also a killed one) and a stale lock file never blocks a later run.
* :func:`write_atomic` writes beside the target and renames over it (``os.replace``), so a kill
  leaves either the old or the new file, never a truncated one.
* :func:`read_rows` reads ``results.jsonl`` tolerating a truncated last line and keeping one row
  per (image, method, layer) (the first), so rows that two writers appended twice count once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import UsageError

log = logging.getLogger(__name__)

LOCK_NAME = ".camscope-evaluate.lock"
_HELD: dict[str, int] = {}  # lock path -> nesting depth in this process


def prepare_output(out: Path) -> None:
    """Create the output folder; a file in its place or no permission is a :class:`UsageError`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the output folder {str(out)!r}: {err.strerror}") from None


def _try_lock(handle: IO[str]) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held by another open file (process)
        return False
    return True


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold the run lock of ``out`` (re-entrant within one process).

    Raises:
        UsageError: another process holds it (the message names its pid and host).
    """
    path = Path(out) / LOCK_NAME
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    try:
        handle = path.open("a+", encoding="utf-8")
    except OSError as err:
        raise UsageError(
            f"cannot write to the output folder {str(out)!r}: {err.strerror}"
        ) from None
    try:
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageError(
                f"the output folder {str(out)!r} is in use by another camscope evaluate "
                f"({holder}); wait for it to finish or choose another --out"
            )
        handle.seek(0)
        handle.truncate()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n")
        handle.flush()
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
    finally:
        handle.close()  # closing the file releases the lock


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: Any) -> None:
    """:func:`write_atomic` of ``data`` as indented JSON (NaN written as null)."""
    write_atomic(path, json.dumps(_finite(data), indent=2) + "\n")


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if data == data and abs(data) != float("inf") else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


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
            fh.write(json.dumps(_finite(r)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
