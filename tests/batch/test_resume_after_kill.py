"""A real job killed with SIGKILL right after its first shard, then resumed: every readable input
ends up in exactly one shard (counted row by row), the broken ones in errors.parquet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from image_folders import BROKEN, MODEL, add_broken_files, make_images

from camscope.batch import parquet as store

SRC = Path(__file__).resolve().parents[2] / "src"
IMAGES = 12


def command(images: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "camscope",
        "explain",
        str(images),
        "--format",
        "parquet",
        "--out",
        str(out),
        "--model",
        MODEL,
        "--method",
        "gradcam,gradcam++",
        "--batch-size",
        "2",
        "--shard-size",
        "2",
        "--decode-workers",
        "1",
        *extra,
    ]


@pytest.mark.slow
def test_a_job_killed_after_its_first_shard_resumes_to_exactly_once(tmp_path: Path) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    ids = make_images(images, IMAGES, seed=3)
    add_broken_files(images)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    slow = {**env, "CAMSCOPE_TEST_FORWARD_DELAY": "0.5"}  # ~3 s of work after the first shard
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as sink:
        job = subprocess.Popen(command(images, out), env=slow, stdout=sink, stderr=sink)
    first = store.commits_dir(out) / "00000.parquet"
    deadline = time.monotonic() + 120
    while not first.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    still_running = job.poll() is None
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    log = stderr.read_text()
    assert first.exists(), log
    assert still_running and not (out / "summary.json").exists(), log  # killed mid-job
    committed = len(store.commit_files(out))
    assert committed < (IMAGES + len(BROKEN)) // 2, log

    resumed = subprocess.run(
        command(images, out, "--resume"), env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 1, resumed.stderr  # the broken files
    rows: Counter[str] = Counter()
    for shard in sorted(out.glob("maps-*.parquet")):
        rows.update(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    assert rows == {id_: 2 for id_ in ids}  # two methods, once each
    errors = pq.read_table(out / "errors.parquet").column("id").to_pylist()
    assert sorted(errors) == sorted(BROKEN)
    assert list(store.staging_dir(out).iterdir()) == []
    assert "were already committed" in resumed.stdout
