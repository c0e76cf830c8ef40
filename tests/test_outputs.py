"""camscope.outputs: one output lock (issue 15.7), one atomic writer with a plain file's
permissions (issue 21.11), one page engine that escapes every name."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from camscope.errors import UsageError
from camscope.outputs import (
    LOCK_NAME,
    output_lock,
    remove_partials,
    render_page,
    write_atomic,
    write_json,
)


def _hold_lock_in_child(folder: Path, *, then: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import fcntl, os, signal, sys, time
        fh = open({str(folder / LOCK_NAME)!r}, "a+")
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.write("camscope evaluate (pid %d on test since now)" % os.getpid()); fh.flush()
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
        with busy, output_lock(tmp_path, "camscope evaluate"):
            pass
    finally:
        child.kill()
        child.wait()
    # the holder was killed (no clean-up ran): its lock died with it
    with output_lock(tmp_path), output_lock(tmp_path):  # re-entrant within one thread
        pass


def test_a_stale_lock_file_does_not_block(tmp_path):
    (tmp_path / LOCK_NAME).write_text("pid 999999 on gone since yesterday\n")
    with output_lock(tmp_path, "camscope train"):
        stamp = (tmp_path / LOCK_NAME).read_text()
        assert (
            stamp.startswith(f"camscope train (pid {os.getpid()} on ") and "yesterday" not in stamp
        )


def test_another_thread_is_another_job(tmp_path):
    seen: list[str] = []

    def other() -> None:
        try:
            with output_lock(tmp_path, "camscope audit"):
                seen.append("got it")
        except UsageError as err:
            seen.append(str(err))

    with output_lock(tmp_path, "camscope embed"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(seen) == 1 and seen[0].startswith(
        f"the output folder {str(tmp_path)!r} is in use by another camscope embed "
        f"(pid {os.getpid()} on "
    )
    assert "wait for it to finish or choose another --out" in seen[0]
    thread = threading.Thread(target=other)  # released: the other thread gets it now
    thread.start()
    thread.join()
    assert seen[-1] == "got it"


def test_an_unusable_folder_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"), output_lock(tmp_path / "file"):
        pass
    with (
        pytest.raises(UsageError, match="part of its path is a file"),
        output_lock(tmp_path / "file" / "sub"),
    ):
        pass


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


def test_write_atomic_takes_text_bytes_and_writers(tmp_path):
    assert write_atomic(tmp_path / "a.txt", "café\n").read_bytes() == "café\n".encode()
    assert write_atomic(tmp_path / "b.bin", b"\x00\xff").read_bytes() == b"\x00\xff"
    path = write_atomic(tmp_path / "c.bin", lambda handle: handle.write(b"abc"), durable=False)
    assert path.read_bytes() == b"abc"


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def broken(handle) -> None:
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, broken)
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_new_files_get_a_plain_files_permissions_and_old_files_keep_theirs(tmp_path):
    """Issue 21.11: model.safetensors was 0600 (safetensors' writer) beside 0644 files."""
    old = os.umask(0o022)
    try:
        fresh = write_atomic(tmp_path / "fresh.txt", "x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        os.umask(0o027)
        assert stat.S_IMODE(write_atomic(tmp_path / "group.txt", "x").stat().st_mode) == 0o640
        private = tmp_path / "private.txt"
        private.write_text("secret")
        private.chmod(0o600)
        assert stat.S_IMODE(write_atomic(private, "new").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_remove_partials_deletes_what_a_killed_writer_left(tmp_path):
    (tmp_path / ".a.json.123-abcd.partial").write_text("half")
    (tmp_path / "a.json").write_text("{}")
    remove_partials(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_write_json_writes_nan_and_infinity_as_null(tmp_path):
    path = write_json(tmp_path / "r.json", {"a": math.nan, "b": [1.5, math.inf], "name": "café"})
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == {"a": None, "b": [1.5, None], "name": "café"}
    assert text.endswith("\n") and "café" in text


def test_pages_escape_every_name_and_embed_their_pictures():
    summary = {
        "model": "net<script>alert(1)</script>",
        "data": "d&<b>",
        "method": "gradcam",
        "layer": "4",
        "classified": 2,
        "accuracy": 0.5,
        "per_class": {"<i>cat": {"images": 2, "correct": 1, "accuracy": 0.5}},
        "failures": [],
        "errors": [{"path": "x\"'.png", "error": "<broken>"}],
    }
    page = render_page("failures.html", title="t", summary=summary, confusion=b"\x89PNG", shown=[])
    assert "<script>" not in page and "net&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;i&gt;cat" in page and "d&amp;&lt;b&gt;" in page and "&lt;broken&gt;" in page
    assert "x&#34;&#39;.png" in page
    assert 'src="data:image/png;base64,iVBORw=="' in page and "50.0%" in page
    assert "http" not in page  # nothing loaded from elsewhere
