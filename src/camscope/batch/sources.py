"""The inputs of a data-set job: a folder of images, or a list of them in a CSV or Parquet file.

Each input has an ``id`` (what the output rows and ``--resume`` know it by) and a ``source`` (the
path that is read):

* a folder: every image file below it (:func:`camscope.io.collect_inputs`, sorted); the id is the
  path relative to the folder, with ``/`` separators (``cats/001.jpg``);
* ``LIST.csv`` (with a header) or ``LIST.parquet``: a ``path`` column, and optionally an ``id``
  column (default: the path as written). Relative paths are relative to the list's folder;
  ``http(s)`` URLs are kept as they are. Ids must be unique: exactly-once output is defined per id.

Ids and sources are kept as Arrow string arrays, not Python lists: a job over millions of images
then holds two compact buffers, which DataLoader workers share with the parent process without
copying (a Python list of strings is copied page by page as its reference counts change).

Example:
    >>> inputs = list_inputs("photos/")  # doctest: +SKIP
    >>> inputs.ids[0].as_py(), inputs.sources[0].as_py()  # doctest: +SKIP
    ('cats/001.jpg', '/data/photos/cats/001.jpg')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DatasetError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

PATH_COLUMN = "path"
ID_COLUMN = "id"
LIST_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class DatasetInputs:
    """The inputs of a job, in a fixed order (position ``i`` is the ``i``-th input).

    Attributes:
        kind: ``"folder"``, ``"csv"`` or ``"parquet"``.
        root: the folder ids are relative to (the input folder, or the list's folder), absolute.
        listing: the folder or list file as an absolute path.
        ids / sources: Arrow string arrays of equal length.
    """

    kind: str
    root: str
    listing: str
    ids: pa.Array
    sources: pa.Array

    def __len__(self) -> int:
        return len(self.ids)


def require_pyarrow() -> None:
    """Fail with an installation hint when the optional ``pyarrow`` is missing."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("--format parquet needs pyarrow: pip install 'camscope[batch]'") from None


def list_inputs(source: str | Path) -> DatasetInputs:
    """List a folder, a ``.csv`` or a ``.parquet`` list of images (see the module docstring).

    Raises:
        DatasetError: missing input, a list without a ``path`` column, empty or null paths,
            duplicate ids, or a folder without images.
    """
    require_pyarrow()
    path = Path(source).expanduser()
    if path.is_dir():
        return _list_folder(path)
    if not path.exists():
        raise DatasetError(
            f"{str(source)!r} does not exist; pass a folder of images or a list file"
        )
    suffix = path.suffix.lower()
    if suffix not in LIST_SUFFIXES:
        raise DatasetError(
            f"{str(source)!r} is neither a folder nor a list; a list is a .csv (with a header) or "
            f".parquet file with a {PATH_COLUMN!r} column and an optional {ID_COLUMN!r} column"
        )
    return _list_file(path, suffix.lstrip("."))


def _list_folder(folder: Path) -> DatasetInputs:
    import pyarrow as pa

    from .. import io

    root = folder.resolve()
    sources = io.collect_inputs([str(root)])
    if not sources:
        raise DatasetError(
            f"no images in {str(folder)!r}; image files end in {', '.join(io.IMAGE_EXTENSIONS)}"
        )
    ids = [Path(os.path.relpath(s, root)).as_posix() for s in sources]
    return DatasetInputs(
        "folder", str(root), str(root), pa.array(ids, pa.string()), pa.array(sources, pa.string())
    )


def _list_file(path: Path, kind: str) -> DatasetInputs:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _read_list(path, kind)
    names = {name.lower(): name for name in table.column_names}
    if PATH_COLUMN not in names:
        raise DatasetError(
            f"{str(path)!r} has no {PATH_COLUMN!r} column (columns: "
            f"{', '.join(table.column_names) or 'none'}); name the image column {PATH_COLUMN!r}"
        )
    paths = _strings(table.column(names[PATH_COLUMN]), path, PATH_COLUMN)
    ids = _strings(table.column(names[ID_COLUMN]), path, ID_COLUMN) if ID_COLUMN in names else paths
    if len(ids) == 0:
        raise DatasetError(f"{str(path)!r} lists no images")
    counts = pc.value_counts(ids)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        shown = ", ".join(repr(v) for v in repeated.field("values")[:5].to_pylist())
        raise DatasetError(
            f"{str(path)!r}: {len(repeated)} id(s) appear more than once ({shown}); every input "
            f"needs its own id (add an {ID_COLUMN!r} column or remove the repeats)"
        )
    root = path.resolve().parent
    sources = [p if "://" in p or os.path.isabs(p) else str(root / p) for p in paths.to_pylist()]
    return DatasetInputs(kind, str(root), str(path.resolve()), ids, pa.array(sources, pa.string()))


def _read_list(path: Path, kind: str) -> pa.Table:
    import pyarrow as pa

    try:
        if kind == "csv":
            from pyarrow import csv

            # Every column as text: ids like 007 must stay 007.
            types = {name: pa.string() for name in _csv_header(path)}
            return csv.read_csv(path, convert_options=csv.ConvertOptions(column_types=types))
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DatasetError(f"cannot read the list {str(path)!r}: {err}") from err


def _csv_header(path: Path) -> list[str]:
    import csv

    with path.open(newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle), [])


def _strings(column: pa.ChunkedArray, path: Path, name: str) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    values = column.combine_chunks()
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    values = values.cast(pa.string())
    empty = pc.or_(pc.is_null(values), pc.equal(pc.utf8_trim_whitespace(values), ""))
    bad = pc.sum(empty).as_py() or 0
    if bad:
        first = pc.index(empty, True).as_py()
        raise DatasetError(
            f"{str(path)!r}: {bad} row(s) have an empty {name!r} (the first is data row "
            f"{first + 1}); fill or remove them"
        )
    return values
