"""``--refresh-changed`` takes changed inputs' rows out of the committed shards exactly once,
whatever moment it is stopped at (:func:`camscope.batch.resume.retire`, repaired by
:func:`camscope.batch.parquet.recover`). Hand-made rows, no model."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from camscope.batch import parquet as store
from camscope.batch.resume import retire

TOTAL = 7
FAILED = frozenset({3})


def step_rows(positions: list[int], version: int = 0) -> pa.Table:
    """Two rows per good input (its map filled with ``version``), one error row per failed one."""
    schema = store.step_schema()
    rows = []
    for p in positions:
        base = {"id": f"img{p}", store.POSITION: p, store.SOURCE: f"/d/img{p}"}
        if p in FAILED:
            rows.append({**dict.fromkeys(schema.names), **base, store.ERROR: "bad"})
            continue
        for method in ("gradcam", "layercam"):
            row = dict.fromkeys(schema.names)
            row.update(base)
            row.update(
                {"method": method, "rank": 0, "map": np.full(4, version, np.float16),
                 "map_shape": [2, 2], "map_scale": 1.0}
            )  # fmt: skip
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def run(out: Path, version: dict[int, int]) -> None:
    """A job (or a resume) over the inputs not yet settled, shards of 3 inputs."""
    for folder in (store.commits_dir(out), store.staging_dir(out)):
        folder.mkdir(parents=True, exist_ok=True)
    store.recover(out)
    done = set(store.settled_ids(store.read_commits(out)).to_pylist())
    settled = np.array([f"img{p}" in done for p in range(TOTAL)])
    log = store.ShardLog(out, store.map_schema(), 3, settled)
    for p in [p for p in range(TOTAL) if not settled[p]]:
        log.add(step_rows([p], version.get(p, 0)))
    log.flush()


def maps_per_id(out: Path) -> Counter[tuple[str, float]]:
    """(id, the version in its map) of every row in the glob, as another tool reads it."""
    counts: Counter[tuple[str, float]] = Counter()
    for shard in sorted(out.glob("maps-*.parquet")):
        table = pq.read_table(shard, columns=["id", "map"])
        for id_, values in zip(table.column("id").to_pylist(), table.column("map").to_pylist()):
            counts[id_, float(values[0])] += 1
    return counts


class Stop(BaseException):
    """Stands in for SIGKILL: nothing after the stopping point runs."""


def stop_after(monkeypatch: pytest.MonkeyPatch, n: int) -> list[str]:
    """Make the n-th file operation (flush, rename, delete) never happen."""
    calls: list[str] = []
    real = {name: getattr(os, name) for name in ("replace", "fsync", "unlink")}

    def wrap(name: str):  # type: ignore[no-untyped-def]
        def operation(*args: object, **kwargs: object) -> object:
            calls.append(f"{name} {args[0]}")
            if len(calls) == n:
                raise Stop(calls[-1])
            return real[name](*args, **kwargs)

        return operation

    for name in real:
        monkeypatch.setattr(os, name, wrap(name))
    return calls


def test_retiring_stopped_at_any_file_operation_leaves_every_input_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = {"img1", "img4", "img5"}  # in both full shards; img5 shares a shard with img3
    refreshed = {1: 1, 4: 1, 5: 1}  # their new maps say 1
    expected = Counter({(f"img{p}", float(refreshed.get(p, 0))): 2 for p in range(TOTAL)})
    del expected["img3", 0.0]  # the failed input has no rows
    reference = tmp_path / "reference"
    run(reference, {})
    calls = stop_after(monkeypatch, 0)
    retire(reference, changed)
    monkeypatch.undo()
    run(reference, refreshed)
    assert maps_per_id(reference) == expected
    operations = len(calls)
    assert operations >= 2 * 5  # two records: flush shard, flush + rename record, 2 deletes...
    for n in range(1, operations + 1):
        out = tmp_path / f"stopped-at-{n}"
        run(out, {})
        calls = stop_after(monkeypatch, n)
        with pytest.raises(Stop):
            retire(out, changed)
        monkeypatch.undo()
        # Another tool reading the glob, before any repair: never an id twice.
        seen = Counter(id_ for id_, _ in maps_per_id(out).elements())
        assert max(seen.values()) <= 2, f"stopped at {calls[-1]}"
        # Readers that follow the records see each id at most once.
        ok = store.read_commits(out).filter(store.read_commits(out).column("ok"))
        assert len(ok) == len(set(ok.column("id").to_pylist())), f"stopped at {calls[-1]}"
        store.recover(out)  # --resume --refresh-changed: repair, retire what is left, explain
        retire(out, changed)
        run(out, refreshed)
        assert maps_per_id(out) == expected, f"stopped at {calls[-1]}"
        assert list(store.staging_dir(out).iterdir()) == []
        errors = store.failed_inputs(store.read_commits(out)).column("id").to_pylist()
        assert errors == ["img3"], f"stopped at {calls[-1]}"


def test_a_retired_record_keeps_the_rows_that_stay_at_their_new_places(tmp_path: Path) -> None:
    run(tmp_path, {})
    retire(tmp_path, {"img1"})
    commits = store.read_commits(tmp_path)
    assert "img1" not in commits.column("id").to_pylist()
    for record in commits.filter(commits.column("ok")).to_pylist():
        table = pq.read_table(store.shard_path(tmp_path, record["shard"]))
        rows = table.slice(record["row"], record["rows"])
        assert set(rows.column("id").to_pylist()) == {record["id"]} and len(rows) == 2
    assert not (tmp_path / "maps-00000.parquet").exists()  # replaced by a new shard
    assert not (store.commits_dir(tmp_path) / "00000.parquet").exists()
