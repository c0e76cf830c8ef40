"""Output folders and the files in them: one folder check, one lock, one atomic writer, one page
engine. Every command that writes files uses these.

* :func:`prepare_output` creates ``--out`` and checks that files can be written into it, with a
  :class:`~camscope.errors.UsageError` that says why not (a file in its place, part of its path a
  file, no permission, a read-only file system).
* :func:`output_lock` holds ``--out/.camscope.lock`` (the ``filelock`` package: ``flock`` on POSIX,
  ``msvcrt`` locking on Windows) for a job's whole run. It never waits: a second job on the same
  folder, in another process or in another thread of this one, is told at once that the folder
  is in use, with the holder's command, pid, host and start time. Within one thread it is
  re-entrant (a command and the library function it calls are one job). The lock belongs to the
  open file, so it ends with the process, killed or not, and a stale lock file never blocks;
  forked children (DataLoader workers) close their copy of it as they start (filelock's at-fork
  hook), so the orphaned workers of a killed job never keep the folder locked.
* :func:`write_atomic` writes text, bytes, or whatever a callback writes to a binary handle, to a
  hidden file beside the target, flushes it to disk and renames it over the target
  (``os.replace``): a reader or a kill at any moment sees the old file or the new one, never half
  of one. New files get the permissions of a plain ``open`` (``0o666`` less the umask; an
  existing file keeps its mode), unlike ``tempfile.mkstemp`` and safetensors' writer (``0o600``).
  :func:`write_json` is the same for JSON (NaN and infinities written as ``null``),
  :func:`write_csv` for CSV; :func:`encoded` is a picture's file content in memory.
* :func:`render_page` fills one of the HTML templates shipped in ``camscope/templates`` (Jinja2,
  autoescaped: a class or file name can never inject markup). Pages are self-contained: styles
  inline, pictures embedded with the ``data_uri`` filter, nothing loaded from elsewhere.

Example:
    >>> with output_lock("out/run", "camscope evaluate"):  # doctest: +SKIP
    ...     write_json(Path("out/run/config.json"), {"methods": ["gradcam"]})
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import io
import json
import math
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from .errors import UsageError

LOCK_NAME = ".camscope.lock"
#: What the hidden files of :func:`write_atomic` end with until they are renamed into place.
PARTIAL = ".partial"

_HELD: dict[str, int] = {}  # lock file (real path) -> the thread that holds it in this process
_GUARD = threading.Lock()


def camscope_version() -> str:
    """The installed camscope's version, recorded in the summaries the commands write."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("camscope")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


def prepare_output(out: str | Path, reserved: tuple[str, ...] = ()) -> Path:
    """Create ``out`` and check that files can be written into it; ``reserved`` names files the
    command will write there (a folder of that name is refused). Returns the folder.

    Raises:
        UsageError: the folder cannot be created or written to (the message says why).
    """
    folder = Path(out)
    shown = repr(str(folder))
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {shown} is a file, not a folder; choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except NotADirectoryError:
        raise UsageError(
            f"cannot create the output folder {shown}: part of its path is a file"
        ) from None
    except OSError as err:
        raise UsageError(
            f"cannot create the output folder {shown}: {err.strerror or err}; choose another --out"
        ) from None
    for name in reserved:
        if (folder / name).is_dir():
            raise UsageError(
                f"{str(folder / name)!r} is a folder; camscope writes a file there: remove it or "
                "choose another --out"
            )
    probe = folder / f".camscope-write-check-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno in (errno.EACCES, errno.EPERM):
            reason = "permission denied"
        elif err.errno == errno.EROFS:
            reason = "read-only file system"
        raise UsageError(
            f"cannot write into the output folder {shown} ({reason}); choose another --out"
        ) from None
    return folder


def _stamp(command: str) -> Callable[[int], None]:
    def write(fd: int) -> None:
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        text = f"{command} (pid {os.getpid()} on {socket.gethostname()} since {since})\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("utf-8"), 0)

    return write


def _busy(folder: Path, lock_file: Path) -> UsageError:
    try:
        holder = lock_file.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        holder = ""
    return UsageError(
        f"the output folder {str(folder)!r} is in use by another {holder or 'camscope job'}; "
        "wait for it to finish or choose another --out"
    )


@contextlib.contextmanager
def output_lock(out: str | Path, command: str = "camscope") -> Iterator[Path]:
    """Hold the lock of the output folder ``out`` (created by :func:`prepare_output` first) for
    the ``with`` block; ``command`` is written into the lock file for the message a second job
    gets. Yields the folder.

    Raises:
        UsageError: the folder is unusable, or another job holds it (the message names the folder
            and the holder).
    """
    from filelock import FileLock, Timeout

    folder = prepare_output(out)
    lock_file = folder / LOCK_NAME
    key = os.path.realpath(lock_file)
    me = threading.get_ident()
    with _GUARD:
        owner = _HELD.get(key)
    if owner == me:  # the same job, one call further down
        yield folder
        return
    if owner is not None:
        raise _busy(folder, lock_file)
    lock = FileLock(lock_file, timeout=0, on_acquired=_stamp(command))
    try:
        lock.acquire()
    except Timeout:
        raise _busy(folder, lock_file) from None
    except OSError as err:
        raise UsageError(
            f"cannot lock the output folder {str(folder)!r}: {err.strerror or err}; "
            "choose another --out"
        ) from None
    with _GUARD:
        _HELD[key] = me
    try:
        yield folder
    finally:
        with _GUARD:
            del _HELD[key]
        lock.release()


Writer = Callable[[IO[bytes]], object]


def write_atomic(path: str | Path, data: str | bytes | Writer, *, durable: bool = True) -> Path:
    """Write ``data`` (text as UTF-8, bytes, or a function that writes to the binary handle it is
    given) to ``path`` through a hidden file beside it and a rename; ``durable`` also pushes the
    file and the rename to disk (``fsync``). Returns ``path``.

    Example:
        >>> write_atomic(Path("out/a.png"), lambda f: picture.save(f, format="PNG"))  # doctest: +SKIP
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # the umask applies, as to a plain open()
    try:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))  # an existing file keeps its mode
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, str):
                handle.write(data.encode("utf-8"))
            elif isinstance(data, (bytes, bytearray, memoryview)):
                handle.write(data)
            else:
                data(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        sync_folder(target.parent)
    return target


def write_picture(
    path: str | Path, picture: Any, image_format: str = "PNG", **options: Any
) -> Path:
    """A PIL image through :func:`write_atomic` in ``image_format`` (PIL's ``save`` options).
    Not pushed to disk (``durable=False``): pictures are many, and a lost one is made again."""
    save = picture.save
    return write_atomic(path, lambda f: save(f, format=image_format, **options), durable=False)


def encoded(picture: Any, image_format: str = "PNG", **options: Any) -> bytes:
    """A PIL image, or a matplotlib figure, encoded in ``image_format`` (the ``save`` /
    ``savefig`` options)."""
    buffer = io.BytesIO()
    (getattr(picture, "savefig", None) or picture.save)(buffer, format=image_format, **options)
    return buffer.getvalue()


def write_csv(path: str | Path, rows: Iterable[Sequence[Any]], *, delimiter: str = ",") -> Path:
    """:func:`write_atomic` of ``rows`` (the header first) as CSV."""
    import csv

    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    return write_atomic(path, buffer.getvalue())


def sync_folder(folder: Path) -> None:
    """Push a folder's entries (renames) to disk, where the platform allows it."""
    with contextlib.suppress(OSError):  # Windows cannot open a folder for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_partials(folder: Path) -> None:
    """Delete what :func:`write_atomic` calls killed before their rename left in ``folder``."""
    for leftover in folder.glob(f"*{PARTIAL}") if folder.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def finite(data: Any, digits: int | None = None) -> Any:
    """``data`` with every NaN or infinite float replaced by None (JSON's ``null``), and the
    others rounded to ``digits`` decimals when given."""
    if isinstance(data, float):
        return None if not math.isfinite(data) else data if digits is None else round(data, digits)
    if isinstance(data, dict):
        return {k: finite(v, digits) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v, digits) for v in data]
    return data


def write_json(path: str | Path, data: Any, *, indent: int = 2, durable: bool = True) -> Path:
    """:func:`write_atomic` of ``data`` as JSON (UTF-8, ``indent``, a final newline; NaN and
    infinities as ``null``)."""
    text = json.dumps(finite(data), indent=indent, ensure_ascii=False, allow_nan=False)
    return write_atomic(path, text + "\n", durable=durable)


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data:`` URI of ``data`` (base64), for pictures embedded in a page."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def percent(value: float | None, decimals: int = 1, missing: str = "–") -> str:
    """A share in [0, 1] as a percentage (``0.5`` -> ``50.0%``); ``missing`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{100 * value:.{decimals}f}%"


@functools.cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("camscope", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing value is an error, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["data_uri"] = data_uri
    env.filters["percent"] = percent
    return env


def render_page(template: str, **context: Any) -> str:
    """Fill ``camscope/templates/<template>`` (autoescaped HTML) with ``context``.

    Example:
        >>> render_page("audit.html", title="<b>x</b>", ...)  # doctest: +SKIP
    """
    return str(_environment().get_template(template).render(**context))
