"""CSV boxes: rows ``file, class, x0, y0, x1, y1`` (a header row is optional), boxes already in
pixel-edge coordinates (``x1 - x0`` is the width); several rows per file give several objects.
(A ``.csv`` with a ``path`` column is an image list instead: :mod:`.lists`.)"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DatasetError
from .checks import Box, number
from .layouts import TOP_LEVEL, Layout, files_in, image_path, make_sample, register_format

if TYPE_CHECKING:
    from .dataset import Sample


def _find(folder: Path) -> list[tuple[int, Layout]]:
    found = files_in(folder, "*.csv")
    return [(TOP_LEVEL, Layout("csv", found, [folder], f"CSV {found[0]}"))] if found else []


@register_format(
    "csv",
    find=_find,
    suffix=".csv",
    image_dirs=lambda path: [path.parent],
    looked_for="*.csv (boxes)",
    title="CSV",
)
def parse_csv(csv_path: Path, dirs: list[Path], allow_outside: bool = False) -> list[Sample]:
    """``file, class, x0, y0, x1, y1`` rows (header optional) into samples with unmapped labels."""
    try:
        rows = list(csv.reader(csv_path.read_text(encoding="utf-8").splitlines()))
    except OSError as err:
        raise DatasetError(f"{csv_path}: cannot read ({err.strerror or err})") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{csv_path}: not a readable CSV file ({err})") from None
    objects: dict[str, list[tuple[str, Box, str]]] = {}  # file -> its objects, in file order
    for n, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 6:
            raise DatasetError(
                f"{csv_path} line {n}: expected 6 columns (file, class, x0, y0, x1, y1); got {len(row)}"
            )
        if n == 1 and row[2].strip().lower() in ("x0", "xmin", "x"):
            continue  # header
        file, label = row[0].strip(), row[1].strip()
        where = f"{csv_path} line {n}"
        if not file or not label:
            raise DatasetError(f"{where}: the file and class columns must not be empty")
        x0, y0, x1, y1 = (
            number(v, where, col) for v, col in zip(row[2:], ("x0", "y0", "x1", "y1"))
        )
        objects.setdefault(file, []).append((label, (x0, y0, x1, y1), where))
    if not objects:
        raise DatasetError(f"{csv_path}: no annotation rows")
    return [
        make_sample(file, image_path(file, dirs, f"{csv_path} file {file!r}", allow_outside),
                objects[file], None, str(csv_path))
        for file in objects
    ]  # fmt: skip
