"""What a data-set job knows about its inputs across runs: their fingerprints, the stems of their
output files, and ``--refresh-changed``.

Every commit record (:func:`camscope.batch.parquet.commit_schema`) keeps, beside each input's id
and the source it was read from, the file's ``size`` and modification time (``mtime_ns``) as they
were when the job listed it, and the ``stem`` of its output files. A resume (:func:`plan_inputs`)
compares them with the inputs as they are now: an input whose id is committed but whose source
is another path (a list row pointed at a new file) or whose file changed (another size or
modification time: the file was replaced or rewritten) no longer matches its rows. The resume is
refused, naming those inputs, unless ``refresh`` (``--refresh-changed``) asks to explain exactly
them again; :func:`retire` then first takes their rows out of the committed shards, so an id
never has its old rows beside its new ones.

Limits, said openly: a file replaced by one of the same size *and* the same modification time
(``cp -p`` of an equal-sized file) is not noticed (hashing every image would cost a full read of
the data set on every resume); a URL is compared by its address only. Checking costs one
``stat`` per input (about 5 us on a local disk, so 5 s per million inputs).

**Retirement** of changed inputs, for each committed record ``S`` that holds some of them (the
protocol of :mod:`camscope.batch.parquet`, one more record):

1. the rows of ``S``'s shard that stay are written to ``staging/maps-T.parquet`` (a new sequence
   number ``T``) and flushed;
2. the record ``T`` (the inputs that stay, at their new rows; ``S``'s failures that no later
   record repeats) is written and renamed into ``commits/``, with ``S``'s number in its metadata
   (``camscope_replaces``): **this rename is the commit**; from now on every reader
   (:func:`~camscope.batch.parquet.read_commits`) ignores ``S``;
3. ``maps-S.parquet`` is deleted (so the glob ``maps-*.parquet`` never holds an input twice);
4. ``maps-T.parquet`` is renamed into place;
5. the record ``S`` is deleted.

A job stopped between steps is repaired by :func:`~camscope.batch.parquet.recover`, which
finishes steps 3 to 5 for every record that a later one replaces.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..outputs import sync_folder
from . import parquet as store

if TYPE_CHECKING:
    import pyarrow as pa

    from ..data.dataset import LabelledData

log = logging.getLogger(__name__)

SHOWN = 5  # changed inputs named in a refusal


@dataclass
class InputPlan:
    """The inputs of a run: ``columns`` (:func:`~camscope.batch.parquet.input_schema`, by
    position: what each commit records) and the ids retired for ``--refresh-changed``."""

    columns: pa.Table
    refreshed: list[str]


def plan_inputs(out: Path, inputs: LabelledData, refresh: bool) -> InputPlan:
    """Fingerprint the listed inputs, give them their stems and compare them with the committed
    ones (see the module docstring); retire the changed ones when ``refresh``.

    Raises:
        UsageError: committed inputs changed and ``refresh`` is off (the message names them).
    """
    import pyarrow as pa

    items = inputs.items
    ids, sources = items.id_column, items.source_column  # type: ignore[attr-defined]
    commits = store.read_commits(out)
    sizes, mtimes = input_stamps(sources)
    columns = pa.table(
        {
            "stem": pa.array(stems_for(ids.to_pylist(), recorded_stems(commits)), pa.string()),
            "size": sizes,
            "mtime_ns": mtimes,
        },
        schema=store.input_schema(),
    )
    changed = changed_inputs(ids, sources, columns, commits)
    if changed and not refresh:
        shown = "; ".join(f"{id_} ({why})" for id_, why in changed[:SHOWN])
        more = f" and {len(changed) - SHOWN} more" if len(changed) > SHOWN else ""
        raise UsageError(
            f"cannot resume {out}: {len(changed)} committed input(s) changed since their maps "
            f"were made: {shown}{more}. Pass --refresh-changed (with --resume) to explain "
            "exactly these again (their old rows are removed), restore the files, or use "
            "another --out"
        )
    refreshed = [id_ for id_, _ in changed]
    if refreshed:
        log.info("explaining %d changed input(s) again", len(refreshed))
        retire(out, set(refreshed))
    return InputPlan(columns, refreshed)


def input_stamps(sources: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``(size, mtime_ns)`` of every local file (null for URLs and files that cannot be read)."""
    import pyarrow as pa

    from ..io.decode import is_url

    sizes: list[int | None] = []
    mtimes: list[int | None] = []
    for source in sources.to_pylist():
        try:
            status = None if is_url(source) else os.stat(source)
        except (OSError, ValueError):
            status = None
        sizes.append(status.st_size if status else None)
        mtimes.append(status.st_mtime_ns if status else None)
    return pa.array(sizes, pa.int64()), pa.array(mtimes, pa.int64())


def recorded_stems(commits: pa.Table) -> dict[str, str]:
    """``id -> stem`` as the commit records gave them out (the first record of an id wins)."""
    import pyarrow.compute as pc

    given = commits.filter(pc.is_valid(commits.column("stem")))
    pairs = list(zip(given.column("id").to_pylist(), given.column("stem").to_pylist()))
    return dict(reversed(pairs))  # reversed: the first record of an id is the last word


def stems_for(ids: list[str], known: dict[str, str]) -> list[str]:
    """The stem of each id's output files: the one ``known`` gave it (stable across runs), else a
    new one made unique against every stem given out so far and each other
    (:func:`camscope.data.inputs.unique_stems` over :func:`camscope.batch.rows.png_stem`, so
    ``a b``, ``a_b`` and ``a:b`` get ``a_b``, ``a_b-2``, ``a_b-3``)."""
    from ..data.inputs import unique_stems
    from .rows import png_stem

    new = [id_ for id_ in dict.fromkeys(ids) if id_ not in known]
    fresh = dict(zip(new, unique_stems([png_stem(id_) for id_ in new], taken=known.values())))
    return [known.get(id_) or fresh[id_] for id_ in ids]


def changed_inputs(
    ids: pa.Array, sources: pa.Array, columns: pa.Table, commits: pa.Table
) -> list[tuple[str, str]]:
    """``(id, what changed)`` for every committed id whose source or file differs now."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = commits.filter(commits.column("ok"))
    if len(ok) == 0:
        return []
    stamps = {name: columns.column(name) for name in ("size", "mtime_ns")}
    now = pa.table({"id": ids, "source": sources, **stamps})
    was = ok.select(["id", "source", "size", "mtime_ns", "seq"])
    both = now.join(was, "id", join_type="inner", right_suffix="_was").sort_by("seq")
    moved = pc.fill_null(pc.not_equal(both.column("source"), both.column("source_was")), True)
    stamped = pc.and_(pc.is_valid(both.column("size")), pc.is_valid(both.column("size_was")))
    rewritten = pc.and_(
        stamped,
        pc.or_(
            pc.not_equal(both.column("size"), both.column("size_was")),
            pc.not_equal(both.column("mtime_ns"), both.column("mtime_ns_was")),
        ),
    )
    found = both.filter(pc.or_(moved, rewritten))
    out = []
    for row in found.to_pylist():
        if row["source"] != row["source_was"]:
            why = f"now read from {row['source']}, was {row['source_was']}"
        else:
            why = (
                f"the file changed: {row['size_was']} -> {row['size']} bytes, modified "
                f"{iso_utc(row['mtime_ns_was'] / 1e9)} -> {iso_utc(row['mtime_ns'] / 1e9)}"
            )
        out.append((row["id"], why))
    return out


def _strings(values: set[str]) -> pa.Array:
    import pyarrow as pa

    return pa.array(sorted(values), pa.string())


def iso_utc(seconds: float) -> str:
    """A POSIX time as an ISO 8601 UTC moment, to the second."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


def retire(out: Path, ids: set[str]) -> None:
    """Take the committed rows of ``ids`` out of the job (the steps of the module docstring),
    one record at a time; their inputs are then not settled and are explained again."""
    import pyarrow.compute as pc

    out = Path(out)
    commits = store.read_commits(out)
    hit = commits.filter(
        pc.and_(commits.column("ok"), pc.is_in(commits.column("id"), _strings(ids)))
    )
    for seq in sorted(set(hit.column("seq").to_pylist())):
        later = commits.filter(pc.greater(commits.column("seq"), seq)).column("id")
        _retire_from(out, int(seq), ids, set(later.to_pylist()))


def _retire_from(out: Path, seq: int, ids: set[str], later: set[str]) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = store.record_path(out, seq)
    record = pq.read_table(path, schema=store.commit_schema())
    gone = _strings(ids)
    stays = pc.invert(pc.is_in(record.column("id"), gone))
    kept = record.filter(pc.and_(record.column("ok"), stays)).sort_by("row")
    failed = record.filter(
        pc.and_(
            pc.and_(pc.invert(record.column("ok")), stays),
            pc.invert(pc.is_in(record.column("id"), _strings(later))),
        )
    )
    old_shard = store.shard_path(out, store.shard_name(seq))
    rows = kept.slice(0, 0)  # no input stays: no shard
    if len(kept):
        rows = pq.read_table(old_shard)
        rows = rows.filter(pc.invert(pc.is_in(rows.column("id"), gone)))
    new_seq = store.next_sequence(out)
    counts = kept.column("rows").to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.r_[0, np.cumsum(counts)[:-1]] if len(counts) else counts
    name = pa.array([store.shard_name(new_seq)] * len(kept), pa.string())
    kept = kept.set_column(kept.schema.get_field_index("shard"), "shard", name)
    kept = kept.set_column(kept.schema.get_field_index("row"), "row", pa.array(starts, pa.int64()))
    replacement = pa.concat_tables([kept, failed]).replace_schema_metadata(
        {store.REPLACES: str(seq).encode()}
    )
    store.publish(out, new_seq, rows, replacement, retired=old_shard)  # steps 1 to 4
    removed = len(record.filter(pc.and_(record.column("ok"), pc.invert(stays))))
    log.info("commit %d without its %d changed input(s) is commit %d", seq, removed, new_seq)
    path.unlink()  # 5.
    sync_folder(path.parent)
