"""Lists of images kept as Arrow columns: every image below a folder, or a CSV/Parquet list.

Each image has an ``id`` (what output rows and ``--resume`` know it by) and a ``source`` (the
path that is read):

* a folder: every image file below it (:func:`camscope.data.inputs.collect_inputs`, sorted); the
  id is the path relative to the folder, with ``/`` separators (``cats/001.jpg``);
* ``LIST.csv`` (with a header) or ``LIST.parquet``: a ``path`` column, and optionally an ``id``
  column (default: the path as written) and a ``label`` column. Relative paths are relative to
  the list's folder; ``http(s)`` URLs are kept as they are. Ids must be unique: exactly-once
  output is defined per id.

Ids, sources and labels are kept as Arrow string arrays, not Python lists (:class:`ArrowSamples`):
a job over millions of images then holds a few compact buffers, which DataLoader workers share
with the parent process without copying (a Python list of strings is copied page by page as its
reference counts change). pyarrow is imported only inside these functions.

Example:
    >>> data = list_images("photos/")  # doctest: +SKIP
    >>> data.items.id_column[0].as_py(), data.items[0].source  # doctest: +SKIP
    ('cats/001.jpg', '/data/photos/cats/001.jpg')
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DatasetError, UsageError
from .dataset import LabelledData, Sample
from .spec import csv_header

if TYPE_CHECKING:
    import pyarrow as pa

PATH_COLUMN = "path"
ID_COLUMN = "id"
LABEL_COLUMN = "label"


class ArrowSamples(Sequence[Sample]):
    """Samples read from Arrow string columns when indexed: ``id_column``, ``source_column``, an
    optional ``label_column`` and an optional ``stem_column`` (the samples' output-file stems);
    ``class_ids`` maps a label onto its accepted model classes."""

    def __init__(
        self,
        id_column: pa.Array,
        source_column: pa.Array,
        label_column: pa.Array | None = None,
        class_ids: Mapping[str, tuple[int, ...]] | None = None,
        stem_column: pa.Array | None = None,
    ) -> None:
        self.id_column = id_column
        self.source_column = source_column
        self.label_column = label_column
        self.class_ids = dict(class_ids or {})
        self.stem_column = stem_column

    def __len__(self) -> int:
        return len(self.id_column)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            start, stop, step = k.indices(len(self))
            return self.take(range(start, stop, step))
        label = None if self.label_column is None else self.label_column[k].as_py()
        return Sample(
            self.id_column[k].as_py(),
            self.source_column[k].as_py(),
            label,
            self.class_ids.get(label, ()) if label is not None else (),
            stem="" if self.stem_column is None else self.stem_column[k].as_py() or "",
        )

    def ids(self) -> list[str]:
        return list(self.id_column.to_pylist())

    def take(self, positions: Sequence[int]) -> ArrowSamples:
        import pyarrow as pa

        index = pa.array(list(positions), pa.int64())
        labels = None if self.label_column is None else self.label_column.take(index)
        stems = None if self.stem_column is None else self.stem_column.take(index)
        return ArrowSamples(
            self.id_column.take(index),
            self.source_column.take(index),
            labels,
            self.class_ids,
            stems,
        )


def require_pyarrow() -> None:
    """Fail with an installation hint when the optional ``pyarrow`` is missing."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("--format parquet needs pyarrow: pip install 'camscope[batch]'") from None


def list_images(source: str | Path) -> LabelledData:
    """Every image below a folder, or a ``.csv``/``.parquet`` list (see the module docstring);
    labels, where a list has them, are not mapped here (:func:`camscope.data.read_data` does).

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
    if suffix not in (".csv", ".parquet"):
        raise DatasetError(
            f"{str(source)!r} is neither a folder nor a list; a list is a .csv (with a header) or "
            f".parquet file with a {PATH_COLUMN!r} column and optional {ID_COLUMN!r} and "
            f"{LABEL_COLUMN!r} columns"
        )
    return _list_file(path, suffix.lstrip("."))


def _list_folder(folder: Path) -> LabelledData:
    import pyarrow as pa

    from .. import io
    from .inputs import collect_inputs

    root = folder.resolve()
    sources = collect_inputs([str(root)])
    if not sources:
        raise DatasetError(
            f"no images in {str(folder)!r}; image files end in {', '.join(io.IMAGE_EXTENSIONS)}"
        )
    ids = [Path(os.path.relpath(s, root)).as_posix() for s in sources]
    items = ArrowSamples(pa.array(ids, pa.string()), pa.array(sources, pa.string()))
    return LabelledData(items, kind="folder", description=f"images in {root}", root=str(root),
                        listing=str(root))  # fmt: skip


def _list_file(path: Path, kind: str) -> LabelledData:
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
    labels = None
    if LABEL_COLUMN in names:
        labels = _strings(table.column(names[LABEL_COLUMN]), path, LABEL_COLUMN)
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
    items = ArrowSamples(ids, pa.array(sources, pa.string()), labels)
    classes = [] if labels is None else sorted(pc.unique(labels).to_pylist())
    return LabelledData(items, classes, kind=kind, description=f"list {path.resolve()}",
                        root=str(root), listing=str(path.resolve()))  # fmt: skip


def _read_list(path: Path, kind: str) -> pa.Table:
    import pyarrow as pa

    try:
        if kind == "csv":
            from pyarrow import csv

            # Every column as text: ids like 007 must stay 007.
            types = {name: pa.string() for name in csv_header(path)}
            return csv.read_csv(path, convert_options=csv.ConvertOptions(column_types=types))
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DatasetError(f"cannot read the list {str(path)!r}: {err}") from err


def _strings(column: pa.ChunkedArray, path: Path, name: str) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    values = column.combine_chunks().cast(pa.string())
    empty = pc.or_(pc.is_null(values), pc.equal(pc.utf8_trim_whitespace(values), ""))
    bad = pc.sum(empty).as_py() or 0
    if bad:
        first = pc.index(empty, True).as_py()
        raise DatasetError(
            f"{str(path)!r}: {bad} row(s) have an empty {name!r} (the first is data row "
            f"{first + 1}); fill or remove them"
        )
    return values
