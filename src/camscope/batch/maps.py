"""Reading a data-set job's maps back: :func:`open_maps`.

The commit records (``_camscope/commits/*.parquet``, one small file per shard) are the index:
for every id they give the shard, the first row and the row count. Opening a folder reads only
them; a lookup then reads the one or two row groups (:data:`~camscope.batch.parquet.ROW_GROUP_ROWS`
rows) that hold the id's rows, never the whole table. Only committed shards are read, so a folder
whose job is still running (or was killed) can be opened at any time.

Example:
    >>> maps = open_maps("out/maps")  # doctest: +SKIP
    >>> record = maps.get("cats/001.jpg", method="gradcam")  # doctest: +SKIP
    >>> record.map.shape, record.label, record.probability  # doctest: +SKIP
    ((7, 7), 'tabby, tabby cat', 0.81)
    >>> maps.heatmap("cats/001.jpg", "gradcam").shape  # [0, 1], at the image's size  # doctest: +SKIP
    (480, 640)
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.lists import require_pyarrow
from ..errors import UsageError
from . import parquet as store
from .resume import recorded_stems, stems_for

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

OPEN_FILES = 16


@dataclass
class MapRecord:
    """One stored row: an image's map for one layer, method and target.

    ``map`` is the signed raw map (float32, ``map_scale`` applied) at the stored resolution,
    ``box`` ``(x0, y0, x1, y1)`` in the image's pixels, ``mask`` a boolean array, ``png`` the
    ``--save-png`` overlay of this id, method and target below ``OUT/png/``. Jobs of a task
    beyond classification also give ``score`` (the explained score) and, for detection,
    ``object_box`` (the detected box in the image's pixels; ``rank`` is the box's index).
    """

    id: str
    width: int
    height: int
    model: str
    layer: str
    method: str
    rank: int
    target: int
    label: str
    probability: float | None
    top5: list[dict[str, Any]] | None
    map: np.ndarray
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None
    score: float | None = None
    object_box: tuple[float, float, float, float] | None = None
    png: str | None = None


def heatmap_of(record: MapRecord, size: tuple[int, int] | None = None) -> np.ndarray:
    """A stored map as ``camscope.explain`` shows it: ReLU, bilinear to ``size`` (default: the
    image's own size), min-max to [0, 1] (:func:`camscope.core.ops.to_input_space`); for guided
    methods the gradient magnitude. Float32 ``(H, W)``."""
    import torch

    from ..core.ops import to_input_space

    size = size or (record.height, record.width)
    # (1, 1, h, w), or (1, 1, 3, H, W) for guided input gradients
    raw = torch.from_numpy(record.map)[None, None]
    return to_input_space(raw, (int(size[0]), int(size[1])))[0, 0].numpy()


def open_maps(out: str | Path) -> MapStore:
    """Open the output folder of ``camscope explain --format parquet`` for reading."""
    return MapStore(out)


class MapStore:
    """The committed maps of a data-set job, looked up by id (see the module docstring)."""

    def __init__(self, out: str | Path) -> None:
        require_pyarrow()
        self.out = Path(out)
        if not store.meta_dir(self.out).is_dir():
            raise UsageError(
                f"{str(out)!r} is not the output of `camscope explain --format parquet` "
                f"(no {store.META_DIR}/ folder)"
            )
        commits = store.read_commits(self.out)
        ok = commits.filter(commits.column("ok"))
        columns = [ok.column(name).to_pylist() for name in ("id", "shard", "row", "rows", "source")]
        self._index: dict[str, tuple[str, int, int, str]] = {
            id_: (shard, row, rows, source) for id_, shard, row, rows, source in zip(*columns)
        }
        self._errors = store.failed_inputs(commits)
        self._stems = recorded_stems(commits)
        self._files: OrderedDict[str, tuple[pq.ParquetFile, list[int]]] = OrderedDict()

    # -- what is there --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def ids(self) -> list[str]:
        """Every id with maps, in commit order."""
        return list(self._index)

    @property
    def settings(self) -> dict[str, Any]:
        """The job's settings (``_camscope/job.json``)."""
        return _read_json(store.meta_dir(self.out) / "job.json")

    @property
    def summary(self) -> dict[str, Any]:
        """``summary.json`` of the last finished run (empty while the first run is going)."""
        return _read_json(self.out / "summary.json")

    def errors(self) -> pa.Table:
        """``(id, reason)`` of the inputs that failed (latest attempt)."""
        return self._errors

    def stems(self, ids: list[str]) -> dict[str, str]:
        """The stem of each id's output files: the one the job gave it (unique in the job, the
        same in every run), else (a folder of an older job) one unique among the job's stems."""
        return dict(zip(ids, stems_for(ids, self._stems)))

    def source(self, id_: str) -> str:
        """The path (or URL) the image was read from."""
        return self._entry(id_)[3]

    def shards(self) -> list[Path]:
        """The committed shard files."""
        names = sorted({entry[0] for entry in self._index.values()})
        return [store.shard_path(self.out, name) for name in names]

    def table(self, columns: list[str] | None = None) -> pa.Table:
        """Every committed row (a full read; pass ``columns`` to read only some)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(path, columns=columns) for path in self.shards()]
        if tables:
            return pa.concat_tables(tables)
        settings = self.settings
        schema = store.map_schema(
            bool(settings.get("save_boxes")),
            bool(settings.get("save_masks")),
            (settings.get("task") or {}).get("task"),
        )
        return schema.empty_table().select(columns or schema.names)

    # -- lookups --------------------------------------------------------------------------------

    def rows(self, id_: str, columns: list[str] | None = None) -> pa.Table:
        """The rows of one id (all layers, methods and targets), read from its row groups."""
        import pyarrow as pa

        shard, first, count, _ = self._entry(id_)
        file, starts = self._open(shard)
        end = first + count
        groups = list(
            range(bisect.bisect_right(starts, first) - 1, bisect.bisect_left(starts, end))
        )
        table = pa.concat_tables([file.read_row_group(g, columns=columns) for g in groups])
        return table.slice(first - starts[groups[0]], count)

    def records(
        self,
        id_: str,
        method: str | None = None,
        layer: str | None = None,
        target: int | None = None,
    ) -> list[MapRecord]:
        """The id's rows as :class:`MapRecord` s, optionally only one method, layer or target."""
        import numpy as np

        wanted = {"method": method, "layer": layer, "target": target}
        out = []
        for row in self.rows(id_).to_pylist():
            if any(value is not None and row[key] != value for key, value in wanted.items()):
                continue
            stored = {f.name: row.get(f.name) for f in fields(MapRecord)}
            for name in ("box", "object_box"):
                stored[name] = tuple(row[name]) if row.get(name) is not None else None
            values = np.asarray(row["map"], dtype=np.float16).astype(np.float32)
            stored["map"] = values.reshape(row["map_shape"]) * np.float32(row["map_scale"])
            if stored["mask"] is not None:
                shape = row["mask_shape"]
                bits = np.unpackbits(np.frombuffer(row["mask"], dtype=np.uint8))
                stored["mask"] = bits[: int(np.prod(shape))].reshape(shape).astype(bool)
            out.append(MapRecord(**stored))
        return out

    def get(
        self,
        id_: str,
        method: str | None = None,
        layer: str | None = None,
        target: int | None = None,
    ) -> MapRecord:
        """The first matching row of an id (rank 0 first)."""
        found = self.records(id_, method, layer, target)
        if not found:
            raise UsageError(
                f"{id_!r} has no map for method={method!r} layer={layer!r} target={target!r}; "
                f"stored: {sorted({(r.method, r.layer) for r in self.records(id_)})}"
            )
        return found[0]

    def map(self, id_: str, method: str | None = None) -> np.ndarray:
        """The signed raw map of an id (float32, at the stored resolution)."""
        return self.get(id_, method).map

    def heatmap(
        self, id_: str, method: str | None = None, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """The first matching map as ``camscope.explain`` shows it (see :func:`heatmap_of`)."""
        return heatmap_of(self.get(id_, method), size)

    # -- internals ------------------------------------------------------------------------------

    def _entry(self, id_: str) -> tuple[str, int, int, str]:
        try:
            return self._index[id_]
        except KeyError:
            import pyarrow.compute as pc

            failed = self._errors.filter(pc.equal(self._errors.column("id"), id_))
            if len(failed):
                reason = failed.column("reason")[0].as_py()
                raise UsageError(f"{id_!r} failed in the job: {reason}") from None
            raise UsageError(
                f"{id_!r} is not in {self.out} ({len(self)} ids with maps; ids are paths "
                "relative to the input folder, or the list's id column)"
            ) from None

    def _open(self, shard: str) -> tuple[pq.ParquetFile, list[int]]:
        import pyarrow.parquet as pq

        if shard in self._files:
            self._files.move_to_end(shard)
            return self._files[shard]
        file = pq.ParquetFile(store.shard_path(self.out, shard))
        sizes = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
        starts = list(itertools.accumulate(sizes, initial=0))[:-1]
        self._files[shard] = (file, starts)
        while len(self._files) > OPEN_FILES:
            _, (old, _) = self._files.popitem(last=False)
            old.close()
        return file, starts


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
