"""The lock of a data-set job's output folder: one job writes to a folder at a time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import UsageError
from .parquet import meta_dir

_LOCKED_HERE: set[str] = set()  # folders this process holds (POSIX locks do not see its own)


@contextlib.contextmanager
def exclusive_lock(out: Path) -> Iterator[None]:
    """Hold ``_camscope/lock`` for the job; a second job on the folder is refused.

    A POSIX record lock (``lockf``), not ``flock``: it belongs to this process alone, so the
    DataLoader workers it forks do not inherit it, and it is released the moment the process dies
    (an ``flock`` shared with orphaned workers would refuse ``--resume`` after a ``SIGKILL``
    until they noticed and exited). Jobs in the same process are told apart by ``_LOCKED_HERE``.
    """
    path = meta_dir(Path(out)) / "lock"
    key = str(path.resolve())
    busy = UsageError(
        f"another camscope job is writing to {out}; wait for it or choose another --out"
    )
    if key in _LOCKED_HERE:
        raise busy
    handle: IO[bytes] = path.open("ab")
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks, no check
            yield
            return
        try:
            fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise busy from None
        _LOCKED_HERE.add(key)
        try:
            yield
        finally:
            _LOCKED_HERE.discard(key)
            fcntl.lockf(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()
