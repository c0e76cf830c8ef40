"""The one data-spec grammar: what every command's ``--data`` (and the data-set job's input) says.

``builtin[:N[:SEED]]`` (the built-in benchmark, :mod:`.synthetic`; N = 50 and SEED = 0 by default
in every command, with an evaluation and a training stream), ``cifar10:DIR`` / ``cifar100:DIR``
(:mod:`.cifar`), ``LIST.csv`` / ``LIST.parquet`` with a ``path`` column (:mod:`.lists`; a ``.csv``
without one is CSV boxes), an annotation file ``.csv`` / ``.json`` / ``.xml`` (:mod:`.annotations`)
or a ``DIR`` (annotations in a common layout, else class folders or every image below it). The
table with every layout and option is in ``docs/architecture.md`` ("Data: the one grammar");
:func:`parse_data` parses a spec, :class:`DataOptions` holds ``--images``, ``--class-map``,
``--unmapped`` and ``--allow-outside-paths``, :func:`camscope.data.read.read_data` reads it.

Example:
    >>> parse_data("builtin:20:3")
    DataSpec(kind='builtin', text='builtin:20:3', path=None, count=20, seed=3)
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError, UsageError

BUILTIN_COUNT = 50  # images of ``builtin`` without N
BUILTIN_SEED = 0  # the one default seed of the built-in benchmark
UNMAPPED = ("error", "skip", "keep")
_BUILTIN = re.compile(r"^builtin(?::(\d+)(?::(\d+))?)?$")
_CIFAR = ("cifar10", "cifar100")


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec.

    Attributes:
        kind: ``"builtin"``, ``"cifar10"``, ``"cifar100"``, ``"list"``, ``"annotations"`` (a file)
            or ``"folder"`` (annotations or class folders, found when read).
        text: the spec as given (stripped).
        path: the file or folder (None for ``builtin``).
        count: images of ``builtin``.
        seed: the seed ``builtin:N:SEED`` names (None: the caller's, by default 0).
    """

    kind: str
    text: str
    path: Path | None = None
    count: int = 0
    seed: int | None = None


@dataclass(frozen=True)
class DataOptions:
    """How labelled data is read (``--images``, ``--class-map``, ``--unmapped``,
    ``--allow-outside-paths``).

    Attributes:
        images: the folder that holds the annotated images (default: the layout's folders).
        class_map: a JSON file ``{"data-set label": ["model class name or index", ...]}``; also
            for class-folder names and list labels.
        unmapped: labels that name no model class: ``"error"`` lists them all in one
            :class:`DatasetError`, ``"skip"`` leaves their objects or images out (said in the
            notes), ``"keep"`` keeps them with no accepted class (``camscope embed``).
        unmapped_folders: with ``unmapped="error"``, class folders that name no model class stop
            the run (``"error"``) or make only their own images fail, named, while the others
            go on (``"fail"``; no mapped folder at all still stops).
        allow_outside: accept image paths in annotations that leave the data folder.
    """

    images: str | None = None
    class_map: str | None = None
    unmapped: str = "error"
    unmapped_folders: str = "error"
    allow_outside: bool = False

    def check(self) -> None:
        for name, allowed in (("unmapped", UNMAPPED), ("unmapped_folders", ("error", "fail"))):
            value = getattr(self, name)
            if value not in allowed:
                raise UsageError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def is_builtin(text: str) -> bool:
    """``builtin``, ``builtin:N`` or ``builtin:N:SEED`` exactly (``builtin_mine`` is a folder)."""
    return _BUILTIN.match(text.strip()) is not None


def parse_data(text: str) -> DataSpec:
    """Parse a data spec (see the module docstring); files are looked at, not read.

    Raises:
        UsageError: an empty spec or a malformed ``builtin:``.
        DatasetError: a file or folder that does not exist, or a file of no known kind.
    """
    spec = str(text).strip()
    if not spec:
        raise UsageError("--data is empty; pass a folder, an annotation file or builtin:N")
    match = _BUILTIN.match(spec)
    if match:
        count = int(match.group(1) or BUILTIN_COUNT)
        seed = None if match.group(2) is None else int(match.group(2))
        return DataSpec("builtin", spec, None, count, seed)
    if spec.startswith("builtin:"):
        raise UsageError(
            f"--data {spec!r}: expected builtin:N or builtin:N:SEED with N and SEED whole numbers"
        )
    kind, _, rest = spec.partition(":")
    if kind in _CIFAR and rest:
        return DataSpec(kind, spec, Path(rest).expanduser())
    path = Path(spec).expanduser()
    if not path.exists():
        raise DatasetError(
            f"{spec!r} does not exist (no such file or folder); pass a folder of images or class "
            "folders, an annotation file or folder, a .csv/.parquet list, cifar10:DIR or builtin:N"
        )
    if path.is_dir():
        return DataSpec("folder", spec, path)
    suffix = path.suffix.lower()
    if suffix == ".parquet" or (suffix == ".csv" and _has_path_column(path)):
        return DataSpec("list", spec, path)
    if suffix in (".csv", ".json", ".xml"):
        return DataSpec("annotations", spec, path)
    raise DatasetError(
        f"{spec!r} is neither a folder nor a list; a list is a .csv (with a header) or .parquet "
        "file with a 'path' column and optional 'id' and 'label' columns; annotations are "
        ".csv, COCO .json or VOC .xml"
    )


def csv_header(path: Path) -> list[str]:
    """The first row of a CSV file (a byte-order mark dropped); ``[]`` for an empty file."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle), [])


def _has_path_column(path: Path) -> bool:
    try:
        header = csv_header(path)
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return "path" in (name.strip().lower() for name in header)
