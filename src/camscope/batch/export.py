"""Overlays and raw maps of some ids of a data-set job, drawn from its stored maps:
:func:`export_maps` (``camscope maps export``).

Each id's files are named after the stem the job gave it (:meth:`MapStore.stems`: unique in the
job, so ids that clean to the same name, ``a b``, ``a_b`` and ``a:b``, get ``a_b``, ``a_b-2``,
``a_b-3``, the same in every export): ``<stem>[.<layer>].<method>[.<class>].png|.npy`` (the
layer when the job stored several, the class for the second and later targets). ``index.csv``
in the export folder maps every file to its id, layer, method and class; a later export into the
same folder adds its rows to it.

Example:
    >>> report = export_maps(open_maps("out/maps"), ["cats/001.jpg"], "out/picked", png=True)  # doctest: +SKIP
    >>> report.written, report.index  # doctest: +SKIP
    (1, PosixPath('out/picked/index.csv'))
"""

from __future__ import annotations

import csv
import io as text_io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CamscopeError, UsageError
from ..outputs import prepare_output, write_atomic, write_picture

if TYPE_CHECKING:
    from .maps import MapStore

INDEX = "index.csv"
INDEX_COLUMNS = ("id", "file", "layer", "method", "target")


@dataclass
class ExportReport:
    """What an export wrote: ``written`` files (``replaced`` of them were there before, from an
    earlier export of the same ids), the ids ``done`` and those that ``failed`` (id, reason)."""

    out: Path
    index: Path
    written: int = 0
    replaced: int = 0
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def export_maps(
    store: MapStore,
    ids: Sequence[str],
    out: str | Path,
    *,
    png: bool = False,
    npy: bool = False,
    methods: Sequence[str] | None = None,
    root: str | Path | None = None,
    colormap: str = "inferno",
    alpha: float = 0.5,
    on_skip: Callable[[str, str], None] | None = None,
) -> ExportReport:
    """Write overlays (``png``, over the original image, found at the path the job read or at
    ``root/<id>``) and/or raw maps (``npy``) of ``ids`` into ``out``; an id given twice is
    exported once. An id that cannot be exported (no maps, image gone) is told to ``on_skip``
    with the reason and the others go on.

    Raises:
        UsageError: neither ``png`` nor ``npy``, no ids, an unknown colour map.
    """
    from .. import io, viz
    from .maps import heatmap_of

    if not (png or npy):
        raise UsageError("say what to export: --png (overlays) and/or --npy (raw maps)")
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        raise UsageError("no ids given; pass --ids ID [ID ...] or --ids-file FILE")
    viz.check_colormap(colormap)
    folder = prepare_output(out)
    report = ExportReport(folder, folder / INDEX)
    stems = store.stems(wanted)
    rows: list[dict[str, str]] = []
    for id_ in wanted:
        try:
            records = [r for r in store.records(id_) if methods is None or r.method in methods]
            if not records:
                raise UsageError(f"{id_!r} has no rows for the methods {list(methods or [])}")
            image = None
            if png:
                source = str(Path(root) / id_) if root is not None else store.source(id_)
                image = io.load_image(source)
            several_layers = len({r.layer for r in records}) > 1
            for record in records:
                name = stems[id_] + (f".{record.layer}" if several_layers else "")
                name += f".{record.method}" + (f".{record.target}" if record.rank else "")
                files = [name + ".npy"] if npy else []
                picture = None
                if image is not None:
                    heat = heatmap_of(record, (image.height, image.width))
                    picture = viz.overlay(image, heat, colormap, alpha)
                    files.append(name + ".png")
                for file in files:
                    path = folder / file
                    path.parent.mkdir(parents=True, exist_ok=True)
                    report.replaced += path.exists()
                    if file.endswith(".npy"):
                        io.save_npy(path, record.map)
                    else:
                        write_picture(path, picture)
                    report.written += 1
                    rows.append(
                        {"id": id_, "file": file, "layer": record.layer,
                         "method": record.method, "target": str(record.target)}
                    )  # fmt: skip
            report.done.append(id_)
        except CamscopeError as err:
            report.failed.append((id_, str(err)))
            if on_skip is not None:
                on_skip(id_, str(err))
    _write_index(report.index, rows)
    return report


def _write_index(path: Path, rows: list[dict[str, str]]) -> None:
    """``index.csv``: this export's rows after the earlier rows of other files."""
    kept: list[dict[str, str]] = []
    if path.exists():
        with path.open(newline="", encoding="utf-8") as handle:
            kept = list(csv.DictReader(handle))
    new = {row["file"] for row in rows}
    table = [row for row in kept if row.get("file") not in new] + rows
    buffer = text_io.StringIO()
    writer = csv.DictWriter(buffer, INDEX_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_atomic(path, buffer.getvalue())
