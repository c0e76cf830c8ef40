"""The output folder: one run at a time, no truncation in place, repeated rows counted once
(issue 15.7, 15.8)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from camscope.errors import UsageError
from camscope.evaluation.store import (
    LOCK_NAME,
    output_lock,
    read_rows,
    scan_rows,
    write_atomic,
)


def _hold_lock_in_child(folder, *, then: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import fcntl, os, signal, sys, time
        fh = open({str(folder / LOCK_NAME)!r}, "a+")
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.write("pid %d on test since now" % os.getpid()); fh.flush()
        print("locked", flush=True)
        {then}
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_holds_it(tmp_path):
    child = _hold_lock_in_child(tmp_path, then="time.sleep(60)")
    try:
        busy = pytest.raises(UsageError, match=r"in use by another camscope evaluate \(pid \d+")
        with busy, output_lock(tmp_path):
            pass
    finally:
        child.kill()
        child.wait()
    # the holder was killed (no clean-up ran): its lock died with it
    with output_lock(tmp_path), output_lock(tmp_path):  # re-entrant within one process
        pass


def test_a_stale_lock_file_does_not_block(tmp_path):
    (tmp_path / LOCK_NAME).write_text("pid 999999 on gone since yesterday\n")
    with output_lock(tmp_path):
        assert str(__import__("os").getpid()) in (tmp_path / LOCK_NAME).read_text()


def test_read_rows_counts_a_repeated_row_once_and_skips_a_truncated_line(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [
        {"id": f"i{k}", "method": "gradcam", "layer": "2", "asked_layer": "2"} for k in range(3)
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text + text + '{"id": "i9", "meth')  # two writers, then a kill
    assert read_rows(path) == rows
    assert scan_rows(path) == (rows, False)
    path.write_text(text)
    assert scan_rows(path) == (rows, True)


def test_write_atomic_never_opens_the_target_for_writing(tmp_path):
    target = tmp_path / "results.jsonl"
    target.write_text("old\n")
    opened: list[tuple[str, str]] = []
    recording = [True]

    def hook(event, args):
        if recording[0] and event == "open" and str(args[0]).endswith("results.jsonl"):
            opened.append((str(args[0]), str(args[1])))

    sys.addaudithook(hook)  # audit hooks cannot be removed: this one records during the test only
    try:
        write_atomic(target, "new\n")
    finally:
        recording[0] = False
    assert target.read_text() == "new\n"
    assert not [mode for _, mode in opened if "w" in mode or "a" in mode]
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left
