"""The commit log: shards committed exactly once, whatever moment a job is stopped at.

These tests feed the :class:`ShardLog` hand-made rows (no model), stop it at every file operation
of the commit protocol, repair the folder with ``recover`` and finish the job, and then count the
rows of every id.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from camscope.batch import parquet as store
from camscope.errors import UsageError

METHODS = ("gradcam", "layercam")


def step_rows(positions: list[int], failed: frozenset[int] = frozenset()) -> pa.Table:
    """What an explain step returns: two rows per good input, one error row per failed one."""
    schema = store.step_schema()
    rows = []
    for p in positions:
        if p in failed:
            row = dict.fromkeys(schema.names)
            row.update(
                {"id": f"img{p}", store.POSITION: p, store.SOURCE: f"/d/img{p}", store.ERROR: "bad"}
            )
            rows.append(row)
            continue
        for method in METHODS:
            row = dict.fromkeys(schema.names)
            row.update(
                {
                    "id": f"img{p}",
                    "width": 10 + p,
                    "height": 20,
                    "model": "m",
                    "layer": "l",
                    "method": method,
                    "rank": 0,
                    "target": p % 3,
                    "label": f"c{p % 3}",
                    "probability": 0.5,
                    "map": np.full(4, p, np.float16),
                    "map_shape": [2, 2],
                    "map_scale": 1.0,
                    store.POSITION: p,
                    store.SOURCE: f"/d/img{p}",
                }
            )
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def new_log(out: Path, total: int, shard_images: int = 3) -> store.ShardLog:
    store.commits_dir(out).mkdir(parents=True, exist_ok=True)
    store.staging_dir(out).mkdir(parents=True, exist_ok=True)
    store.recover(out)
    done = store.settled_ids(store.read_commits(out)).to_pylist()
    settled = np.array([f"img{p}" in done for p in range(total)])
    return store.ShardLog(out, store.map_schema(), shard_images, settled)


def run(out: Path, total: int, failed: frozenset[int] = frozenset(), batch: int = 2) -> None:
    """A job over inputs 0..total-1 in batches, skipping what is committed (like --resume)."""
    log = new_log(out, total)
    todo = [p for p in range(total) if not log.settled[p]]
    for i in range(0, len(todo), batch):
        log.add(step_rows(todo[i : i + batch], failed))
    log.flush()


def rows_per_id(out: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in sorted(out.glob("maps-*.parquet")):
        counts.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return counts


def test_shards_hold_every_input_once_and_the_records_index_them(tmp_path: Path) -> None:
    run(tmp_path, 8, failed=frozenset({4}))
    assert rows_per_id(tmp_path) == {f"img{p}": 2 for p in range(8) if p != 4}
    assert sorted(p.name for p in tmp_path.glob("maps-*.parquet")) == [
        "maps-00000.parquet",
        "maps-00001.parquet",
        "maps-00002.parquet",
    ]
    assert list(store.staging_dir(tmp_path).iterdir()) == []
    commits = store.read_commits(tmp_path)
    assert sorted(commits.column("id").to_pylist()) == sorted(f"img{p}" for p in range(8))
    for record in commits.filter(commits.column("ok")).to_pylist():
        table = pq.read_table(tmp_path / record["shard"]).slice(record["row"], record["rows"])
        assert set(table.column("id").to_pylist()) == {record["id"]}
        assert table.column("method").to_pylist() == list(METHODS)
    failed = store.failed_inputs(commits).to_pylist()
    assert failed == [{"id": "img4", "reason": "bad"}]


def test_a_shard_never_splits_an_input_and_counts_inputs_not_rows(tmp_path: Path) -> None:
    log = new_log(tmp_path, 10, shard_images=4)
    log.add(step_rows([0, 1, 2]))
    assert log.shards == []  # 3 inputs (6 rows) are fewer than 4 inputs
    log.add(step_rows([3, 4, 5]))
    assert log.shards == ["maps-00000.parquet"]
    first = pq.read_table(tmp_path / "maps-00000.parquet").column("id").to_pylist()
    assert first == [f"img{p}" for p in (0, 0, 1, 1, 2, 2, 3, 3)]
    log.add(step_rows([4]))  # delivered twice (a retried task): dropped
    log.flush()
    assert rows_per_id(tmp_path) == {f"img{p}": 2 for p in range(6)}


class Stop(BaseException):
    """Stands in for SIGKILL: nothing after the stopping point runs."""


def _stop_after(monkeypatch: pytest.MonkeyPatch, n: int) -> list[str]:
    """Make the n-th file operation of the commit protocol (write, flush, rename) never finish."""
    calls: list[str] = []
    real_replace, real_fsync = os.replace, os.fsync

    def count(name: str) -> None:
        calls.append(name)
        if len(calls) == n:
            raise Stop(name)

    def replace(src: object, dst: object) -> None:
        count(f"rename {Path(str(dst)).parent.name}/{Path(str(dst)).name}")
        real_replace(src, dst)  # type: ignore[arg-type]

    def fsync(fd: int) -> None:
        count("fsync")
        real_fsync(fd)

    monkeypatch.setattr(store.os, "replace", replace)
    monkeypatch.setattr(store.os, "fsync", fsync)
    return calls


def test_a_job_stopped_at_any_file_operation_resumes_to_every_input_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    total, failed = 9, frozenset({2, 7})
    reference = tmp_path / "reference"
    calls = _stop_after(monkeypatch, 0)
    run(reference, total, failed)
    operations = len(calls)
    assert operations >= 3 * 4  # per shard: fsync shard, fsync + rename record, rename shard
    for n in range(1, operations + 1):
        out = tmp_path / f"stopped-at-{n}"
        monkeypatch.undo()
        calls = _stop_after(monkeypatch, n)
        with pytest.raises(Stop):
            run(out, total, failed)
        monkeypatch.undo()
        # A reader sees only committed inputs, each once, before any repair.
        partial = store.read_commits(out)
        ok = partial.filter(partial.column("ok")).column("id").to_pylist()
        assert len(ok) == len(set(ok))
        run(out, total, failed)  # --resume: recover, then the rest
        assert rows_per_id(out) == rows_per_id(reference), f"stopped at {calls[-1]}"
        assert list(store.staging_dir(out).iterdir()) == []
        errors = store.failed_inputs(store.read_commits(out)).column("id").to_pylist()
        assert errors == ["img2", "img7"]


def test_resume_tries_failed_inputs_again_and_forgets_their_errors(tmp_path: Path) -> None:
    run(tmp_path, 5, failed=frozenset({1, 3}))
    assert store.failed_inputs(store.read_commits(tmp_path)).column("id").to_pylist() == [
        "img1",
        "img3",
    ]
    run(tmp_path, 5, failed=frozenset({3}))  # img1 was fixed meanwhile
    assert rows_per_id(tmp_path) == {f"img{p}": 2 for p in (0, 1, 2, 4)}
    assert store.failed_inputs(store.read_commits(tmp_path)).to_pylist() == [
        {"id": "img3", "reason": "bad"}
    ]


def test_a_committed_shard_that_vanished_is_an_error_naming_the_record(tmp_path: Path) -> None:
    run(tmp_path, 4)
    (tmp_path / "maps-00000.parquet").unlink()
    with pytest.raises(UsageError, match=r"lists the shard maps-00000.parquet, which is missing"):
        store.recover(tmp_path)
