"""The on-disk layout of a data-set job: Parquet shards committed exactly once.

Layout of the output folder::

    DIR/maps-00000.parquet ...      committed shards: one row per image, layer, method and target
    DIR/errors.parquet              (id, reason) of every input that failed, rebuilt after each run
    DIR/summary.json                counts, failures, throughput (rebuilt after each run)
    DIR/png/                        overlays, only with --save-png
    DIR/_camscope/job.json          the settings that decide the rows (checked by --resume)
    DIR/_camscope/commits/S.parquet the commit record of shard S: every input it settled
    DIR/_camscope/staging/          shards written but not (yet) committed
    DIR/.camscope.lock              held while a job writes (a second job is refused at once)

**Commit protocol** (:meth:`ShardLog.commit`), for shard ``S``:

1. the shard is written to ``staging/maps-S.parquet`` and flushed to disk (``fsync``);
2. the commit record (id, source, ok, reason, for each image the shard and its first row and
   row count, and the input's ``stem``, ``size`` and ``mtime_ns``) is written beside ``commits/S.parquet`` (a hidden ``*.partial`` file), flushed,
   and renamed to ``commits/S.parquet`` (:func:`camscope.outputs.write_atomic`). **This rename is the commit**: a rename within one folder is atomic, so
   the record is either there whole or not at all;
3. the shard is renamed to ``DIR/maps-S.parquet``.

A job killed at any moment (``SIGKILL`` included) leaves one of three states, and
:func:`recover` (run before every job and by ``--resume``) repairs each: no record (the staged
shard is deleted; its images are explained again), a record and a staged shard (the rename of
step 3 is done now), or both in place. An input whose record says ``ok`` is never explained again,
so every readable input ends up in exactly one committed shard. ``DIR/maps-*.parquet`` only ever
holds committed shards, so other tools can read that glob at any time. ``--refresh-changed``
replaces a record by a later one without the changed inputs (its metadata names the record it
replaces; :mod:`camscope.batch.resume`), and :func:`recover` finishes such a replacement too.

Inputs that failed are recorded too (``ok = false`` with the reason), and are tried again by
``--resume`` (the cause, such as a missing file, may have been fixed); ``errors.parquet`` lists
the inputs whose latest attempt failed.

**Row schema**: :func:`map_schema`; the table in docs/scale.md says what each column holds.

The stored map is ``raw / map_scale`` with ``map_scale = max |raw|`` (1 for an all-zero map), so
it lies in [-1, 1] and float16 keeps every value to within ``2**-11 * max |raw|``, whatever the
map's magnitude (raw maps range from 1e-6 to 1e4 across models: float16 alone would underflow or
overflow). Multiply by ``map_scale`` to get the signed raw map of :func:`camscope.explain`
(deviation from the issue's "map float16": one float32 per row more).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..outputs import remove_partials, sync_folder, write_atomic

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_DIR = "_camscope"
SHARD_PATTERN = re.compile(r"^maps-(\d{5,})\.parquet$")
ROW_GROUP_ROWS = 256  # one map lookup reads one row group (~50 KB at 7x7, ~25 MB at 224x224)
POSITION = "_position"  # internal columns of a step's output; never written to a shard
ERROR = "_error"
SOURCE = "_source"
INPUT_COLUMNS = ("stem", "size", "mtime_ns")
REPLACES = b"camscope_replaces"  # commit-record metadata: the record it replaces (resume.py)


def map_schema(
    save_boxes: bool = False, save_masks: bool = False, task: str | None = None
) -> pa.Schema:
    """The Arrow schema of the shards (see the module docstring); ``task`` is the job's task
    beyond classification (``detection``, ``segmentation``, ``similarity``) or None."""
    import pyarrow as pa

    top5 = pa.struct([("class", pa.int32()), ("label", pa.string()), ("probability", pa.float32())])
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("model", pa.string()),
        pa.field("layer", pa.string()),
        pa.field("method", pa.string()),
        pa.field("rank", pa.int16()),
        pa.field("target", pa.int32()),
        pa.field("label", pa.string()),
        pa.field("probability", pa.float32()),
        pa.field("top5", pa.list_(top5)),
        pa.field("map", pa.list_(pa.float16())),
        pa.field("map_shape", pa.list_(pa.int32())),
        pa.field("map_scale", pa.float32()),
        pa.field("png", pa.string()),  # the overlay's file below DIR/png/ (null: no --save-png)
    ]
    if save_boxes:
        fields.append(pa.field("box", pa.list_(pa.float32(), 4)))
    if save_masks:
        fields.append(pa.field("mask", pa.binary()))
        fields.append(pa.field("mask_shape", pa.list_(pa.int32())))
    if task not in (None, "classification"):
        fields.append(pa.field("score", pa.float32()))
        if task == "detection":
            fields.append(pa.field("object_box", pa.list_(pa.float32(), 4)))
    return pa.schema(fields, metadata={"camscope_format": str(FORMAT_VERSION)})


def add_row(columns: dict[str, list[Any]], row: dict[str, Any]) -> None:
    """Append ``row`` to ``columns`` (None in the columns it does not have)."""
    for name, values in columns.items():
        values.append(row.get(name))


def step_schema(
    save_boxes: bool = False, save_masks: bool = False, task: str | None = None
) -> pa.Schema:
    """What one explain step returns: the shard rows plus the input's position, source and error
    (a failed input is one row with its error and empty map columns)."""
    import pyarrow as pa

    base = map_schema(save_boxes, save_masks, task)
    internal = [(POSITION, pa.int64()), (SOURCE, pa.string()), (ERROR, pa.string())]
    return pa.schema([*base, *(pa.field(n, t) for n, t in internal)], metadata=base.metadata)


def commit_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("source", pa.string()),
            pa.field("ok", pa.bool_(), nullable=False),
            pa.field("reason", pa.string()),
            pa.field("shard", pa.string()),
            pa.field("row", pa.int64()),
            pa.field("rows", pa.int32()),
            # What the input was when it was listed (resume compares them: resume.py), and the
            # stem of its output files; null in records of older jobs.
            pa.field("stem", pa.string()),
            pa.field("size", pa.int64()),
            pa.field("mtime_ns", pa.int64()),
        ]
    )


def input_schema() -> pa.Schema:
    """The per-input columns of :func:`commit_schema` a job knows before explaining (by
    position: :class:`ShardLog` ``inputs``)."""
    import pyarrow as pa

    return pa.schema([commit_schema().field(name) for name in INPUT_COLUMNS])


def meta_dir(out: Path) -> Path:
    return Path(out) / META_DIR


def commits_dir(out: Path) -> Path:
    return meta_dir(out) / "commits"


def staging_dir(out: Path) -> Path:
    return meta_dir(out) / "staging"


def shard_name(seq: int) -> str:
    return f"maps-{seq:05d}.parquet"


def write_table(path: Path, table: pa.Table, **kwargs: Any) -> None:
    """Write a Parquet file (zstd) through :func:`camscope.outputs.write_atomic`: flushed to disk
    and renamed into place, never seen half-written."""
    import pyarrow.parquet as pq

    write_atomic(path, lambda handle: pq.write_table(table, handle, compression="zstd", **kwargs))


def commit_files(out: Path) -> list[tuple[int, Path]]:
    """The commit records in the folder, in commit order."""
    folder = commits_dir(out)
    if not folder.is_dir():
        return []
    found = (p for p in folder.iterdir() if p.suffix == ".parquet" and p.stem.isdigit())
    return sorted((int(path.stem), path) for path in found)


def replaced_records(out: Path) -> dict[int, int]:
    """``{replaced: replacing}`` sequence numbers: records that a later one replaces (the rows of
    changed inputs retired by ``--refresh-changed``, :mod:`camscope.batch.resume`)."""
    import pyarrow.parquet as pq

    replaced = {}
    for seq, path in commit_files(out):
        value = (pq.read_metadata(path).metadata or {}).get(REPLACES)
        if value is not None:
            replaced[int(value)] = seq
    return replaced


def read_commits(out: Path) -> pa.Table:
    """Every commit record (but those a later one replaces), with its sequence number in a
    ``seq`` column, in commit order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [commit_schema().append(pa.field("seq", pa.int32())).empty_table()]
    replaced = replaced_records(out)
    for seq, path in commit_files(out):
        if seq in replaced:
            continue
        table = pq.read_table(path, schema=commit_schema())
        tables.append(table.append_column("seq", pa.array([seq] * len(table), pa.int32())))
    return pa.concat_tables(tables)


def shard_path(out: Path, name: str) -> Path:
    """Where a committed shard is: in place, or still staged after a kill between the commit and
    the final rename (readers then find it there; the next job moves it)."""
    final = Path(out) / name
    return final if final.exists() else staging_dir(out) / name


def recover(out: Path) -> None:
    """Bring the folder to a committed state (see the module docstring): finish the renames of
    committed shards, delete shards and records that were never committed.

    Raises:
        UsageError: a commit record names a shard that is in neither place (deleted by hand).
    """
    import pyarrow.parquet as pq

    out = Path(out)
    staged = staging_dir(out)
    named: set[str] = set()
    for folder in (out, commits_dir(out)):
        remove_partials(folder)  # written aside by a job that stopped before renaming it
    files = dict(commit_files(out))
    for old in replaced_records(out):  # finish a retirement (resume.retire's steps 3 to 5)
        for leftover in (out / shard_name(old), staged / shard_name(old), files.pop(old, None)):
            if leftover is not None and leftover.exists():
                log.info("removing %s: replaced by a later commit", leftover)
                leftover.unlink()
    for seq, path in sorted(files.items()):
        shards = {s for s in pq.read_table(path, columns=["shard"]).column(0).to_pylist() if s}
        for name in shards:
            named.add(name)
            if (out / name).exists():
                continue
            if (staged / name).exists():
                log.info("finishing the commit of %s (the job stopped after its commit)", name)
                os.replace(staged / name, out / name)
                sync_folder(out)
                continue
            raise UsageError(
                f"{out}: commit {seq} lists the shard {name}, which is missing; restore it, or "
                f"delete {path} to explain its images again"
            )
    if staged.is_dir():
        for leftover in staged.iterdir():
            log.info("removing %s: written but never committed", leftover)
            leftover.unlink()
    for path in out.glob("maps-*.parquet"):
        if SHARD_PATTERN.match(path.name) and path.name not in named:
            log.warning("%s is not in any commit record; it is ignored", path)


def next_sequence(out: Path) -> int:
    """One more than any shard or record number in the folder (stray files included)."""
    shards = (SHARD_PATTERN.match(path.name) for path in Path(out).glob("maps-*.parquet"))
    numbers = [seq for seq, _ in commit_files(out)] + [int(m.group(1)) for m in shards if m]
    return max(numbers, default=-1) + 1


class ShardLog:
    """Buffers the rows of a running job and commits them in shards of ``shard_images`` inputs.

    ``add`` takes a step's output (:func:`step_schema`); an input whose position was already
    settled in this job (``settled[position]``) is dropped, so a batch delivered twice by a
    distributed engine cannot create duplicates.
    """

    def __init__(
        self,
        out: Path,
        schema: pa.Schema,
        shard_images: int,
        settled: np.ndarray,
        inputs: pa.Table | None = None,
    ) -> None:
        self.out = Path(out)
        self.inputs = inputs  # input_schema() columns by position, recorded with each input
        self.schema = schema
        self.shard_images = max(1, int(shard_images))
        self.settled = settled
        self.seq = next_sequence(self.out)
        self._pending: list[pa.Table] = []
        self._pending_inputs = 0
        self.committed_inputs = 0
        self.committed_ok = 0
        self.committed_rows = 0
        self.failures = 0
        self.shards: list[str] = []

    def add(self, step_rows: pa.Table) -> int:
        """Buffer a step's rows; commit every full shard. Returns the number of new inputs."""
        import numpy as np
        import pyarrow as pa

        positions = step_rows.column(POSITION).to_numpy()
        if len(positions) == 0:
            return 0
        fresh = ~self.settled[positions]
        if not fresh.all():
            log.warning("dropping %d row(s) of inputs that were already settled", (~fresh).sum())
            step_rows = step_rows.filter(pa.array(fresh))
            positions = positions[fresh]
        unique = np.unique(positions)
        self.settled[unique] = True
        self._pending.append(step_rows)
        self._pending_inputs += len(unique)
        while self._pending_inputs >= self.shard_images:
            self._commit_full_shards()
        return len(unique)

    def _commit_full_shards(self) -> None:
        import pyarrow as pa

        table = pa.concat_tables(self._pending)
        # Rows of one input are contiguous; cut after the shard_images-th distinct input.
        starts = _run_starts(table.column(POSITION).to_numpy())
        cut = int(starts[self.shard_images]) if len(starts) > self.shard_images else len(table)
        self.commit(table.slice(0, cut))
        rest = table.slice(cut)
        self._pending = [rest] if len(rest) else []
        self._pending_inputs = len(starts) - min(len(starts), self.shard_images)

    def flush(self) -> None:
        """Commit whatever is buffered (the last, smaller shard)."""
        import pyarrow as pa

        if self._pending:
            self.commit(pa.concat_tables(self._pending))
        self._pending = []
        self._pending_inputs = 0

    def commit(self, rows: pa.Table) -> None:
        """Write one shard and its commit record (the protocol of the module docstring)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if len(rows) == 0:
            return
        seq = self.seq
        self.seq += 1
        is_ok = pc.is_null(rows.column(ERROR))
        good = rows.filter(is_ok)
        bad = rows.filter(pc.invert(is_ok))
        shard = good.select(self.schema.names).cast(self.schema)
        # One record per input: its first row and row count in the shard (a failure: its row).
        starts = _run_starts(good.column(POSITION).to_numpy())
        counts = np.diff(np.r_[starts, len(good)])
        heads = pa.concat_tables([good.take(pa.array(starts, pa.int64())), bad])
        n_ok, n_bad = len(starts), len(bad)
        name = shard_name(seq)
        record = pa.table(
            {
                "id": heads.column("id"),
                "source": heads.column(SOURCE),
                "ok": pa.array([True] * n_ok + [False] * n_bad),
                "reason": heads.column(ERROR),
                "shard": pa.array([name] * n_ok + [None] * n_bad, pa.string()),
                "row": pa.array(starts.tolist() + [None] * n_bad, pa.int64()),
                "rows": pa.array(counts.tolist() + [None] * n_bad, pa.int32()),
                **self._input_columns(heads.column(POSITION)),
            },
            schema=commit_schema(),
        )
        if publish(self.out, seq, shard, record):
            self.shards.append(name)
        self.committed_inputs += n_ok + n_bad
        self.committed_ok += n_ok
        self.committed_rows += len(shard)
        self.failures += n_bad
        log.debug(
            "committed %s: %d inputs (%d failed), %d rows", name, n_ok + n_bad, n_bad, len(shard)
        )

    def _input_columns(self, positions: pa.ChunkedArray) -> dict[str, Any]:
        import pyarrow as pa

        if self.inputs is None:
            return {
                n: pa.nulls(len(positions), input_schema().field(n).type) for n in INPUT_COLUMNS
            }
        return {n: self.inputs.column(n).take(positions) for n in INPUT_COLUMNS}


def record_path(out: Path, seq: int) -> Path:
    return commits_dir(out) / f"{seq:05d}.parquet"


def publish(
    out: Path, seq: int, shard: pa.Table, record: pa.Table, retired: Path | None = None
) -> bool:
    """Steps 1 to 3 of the commit protocol (module docstring) for shard ``seq``; ``retired``, a
    shard that ``record`` replaces, is deleted between the commit and the rename. Returns
    whether a shard was written (a record of failures alone has none)."""
    name = shard_name(seq)
    staged = staging_dir(out) / name
    if len(shard):
        write_table(staged, shard, row_group_size=ROW_GROUP_ROWS)  # 1.
    write_table(record_path(out, seq), record)  # 2. the commit
    if retired is not None and retired.exists():
        retired.unlink()
        sync_folder(retired.parent)
    if len(shard):
        os.replace(staged, out / name)  # 3.
        sync_folder(out)
    return bool(len(shard))


def _run_starts(positions: np.ndarray) -> np.ndarray:
    """Indices where a new input's rows begin (the rows of one input are contiguous)."""
    import numpy as np

    if len(positions) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, positions[1:] != positions[:-1]])


def settled_ids(commits: pa.Table) -> pa.Array:
    """Ids explained in some committed shard (``--resume`` skips these)."""
    import pyarrow.compute as pc

    return pc.unique(commits.filter(commits.column("ok")).column("id"))


def failed_inputs(commits: pa.Table) -> pa.Table:
    """``(id, reason)`` of every input whose latest attempt failed and none succeeded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = settled_ids(commits)
    bad = commits.filter(
        pc.and_(pc.invert(commits.column("ok")), pc.invert(pc.is_in(commits.column("id"), ok)))
    )
    # Latest attempt per id: commits are in order, so keep each id's last row.
    last = {value: i for i, value in enumerate(bad.column("id").to_pylist())}
    picked = bad.take(pa.array(sorted(last.values()), pa.int64()))
    return pa.table({"id": picked.column("id"), "reason": picked.column("reason")})
