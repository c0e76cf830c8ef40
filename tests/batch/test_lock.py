"""The data-set job's output folder is locked (:func:`camscope.outputs.output_lock`): a second
job is refused at once, also in another thread of the same process, and a killed job's forked
children (the DataLoader's decoding workers) do not keep the folder locked for ``--resume``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from camscope.errors import UsageError
from camscope.outputs import output_lock

SRC = Path(__file__).resolve().parents[2] / "src"
BUSY = r"is in use by another camscope explain \(pid \d+ on "


def test_a_second_job_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    refused: list[BaseException] = []

    def second_job() -> None:
        try:
            with output_lock(tmp_path, "camscope explain"):
                pass
        except UsageError as err:
            refused.append(err)

    with output_lock(tmp_path, "camscope explain"):
        worker = threading.Thread(target=second_job)
        worker.start()
        worker.join()
    assert len(refused) == 1
    with pytest.raises(UsageError, match=BUSY):
        raise refused[0]
    assert str(tmp_path) in str(refused[0])  # the message names the folder
    with output_lock(tmp_path, "camscope explain"):  # released again
        pass


def test_another_process_is_refused_while_the_job_runs(tmp_path: Path) -> None:
    probe = textwrap.dedent(
        f"""
        from camscope.outputs import output_lock
        from camscope.errors import UsageError
        try:
            with output_lock({str(tmp_path)!r}, "camscope explain"):
                print("got it")
        except UsageError as err:
            print(err)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with output_lock(tmp_path, "camscope explain"):
        held = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True
        )
    free = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert f"is in use by another camscope explain (pid {os.getpid()} on " in held.stdout, (
        held.stderr
    )
    assert free.stdout.strip() == "got it", free.stderr


def test_a_killed_job_leaves_no_lock_behind_in_its_forked_children(tmp_path: Path) -> None:
    job = textwrap.dedent(
        f"""
        import os, sys, time
        from camscope.outputs import output_lock
        with output_lock({str(tmp_path)!r}, "camscope explain"):
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
        with output_lock(tmp_path, "camscope explain"):  # at once, while the orphaned child runs
            os.kill(child, 0)  # (raises if the child were gone)
    finally:
        os.kill(child, signal.SIGKILL)


def test_the_data_set_job_is_refused_before_it_loads_its_model(tmp_path: Path) -> None:
    from PIL import Image

    from camscope.batch.job import DatasetJob, ModelRecipe
    from camscope.batch.pipeline import run_dataset_job

    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    recipe = ModelRecipe(name="no-such-model-is-ever-loaded")
    job = DatasetJob(source=tmp_path / "images", out=tmp_path / "out", model=recipe)
    with output_lock(tmp_path / "out", "camscope explain"):
        worker_errors: list[BaseException] = []

        def second() -> None:
            try:
                run_dataset_job(job)
            except BaseException as err:
                worker_errors.append(err)

        worker = threading.Thread(target=second)
        worker.start()
        worker.join()
    assert len(worker_errors) == 1 and isinstance(worker_errors[0], UsageError)
    assert "is in use by another camscope explain" in str(worker_errors[0])
