"""The output folder's lock: a second job is refused, and a killed job's forked children (the
DataLoader's decoding workers) do not keep the folder locked for ``--resume``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from camscope.batch import parquet as store
from camscope.batch.lock import exclusive_lock
from camscope.errors import UsageError

SRC = Path(__file__).resolve().parents[2] / "src"


def test_a_second_job_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    store.meta_dir(tmp_path).mkdir(parents=True)
    with (
        exclusive_lock(tmp_path),
        pytest.raises(UsageError, match="another camscope job is writing"),
        exclusive_lock(tmp_path),
    ):
        pass
    with exclusive_lock(tmp_path):  # released again
        pass


def test_another_process_is_refused_while_the_job_runs(tmp_path: Path) -> None:
    store.meta_dir(tmp_path).mkdir(parents=True)
    probe = textwrap.dedent(
        f"""
        from camscope.batch.lock import exclusive_lock
        from camscope.errors import UsageError
        try:
            with exclusive_lock({str(tmp_path)!r}):
                print("got it")
        except UsageError as err:
            print(err)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with exclusive_lock(tmp_path):
        held = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True
        )
    free = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert "another camscope job is writing" in held.stdout, held.stderr
    assert free.stdout.strip() == "got it", free.stderr


def test_a_killed_job_leaves_no_lock_behind_in_its_forked_children(tmp_path: Path) -> None:
    store.meta_dir(tmp_path).mkdir(parents=True)
    job = textwrap.dedent(
        f"""
        import os, sys, time
        from camscope.batch.lock import exclusive_lock
        with exclusive_lock({str(tmp_path)!r}):
            child = os.fork()
            if child == 0:  # a decoding worker: lives on after its parent is killed
                time.sleep(60)
                os._exit(0)
            print(child, flush=True)
            time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen(
        [sys.executable, "-c", job], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    child = int(process.stdout.readline())
    try:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        with exclusive_lock(tmp_path):  # at once, while the orphaned child still runs
            os.kill(child, 0)  # (raises if the child were gone)
    finally:
        os.kill(child, signal.SIGKILL)
