"""`camscope serve` in a process of its own, for the tests that drive it over real sockets or in
a browser: :func:`start_server` starts it and reads the address it prints, :func:`serving` does
so for a ``with`` block. The tests' own modules are importable in it (model factories)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def start_server(*options: str) -> tuple[subprocess.Popen, str]:
    """Start `camscope serve --port 0 OPTIONS`; returns the process and the URL it prints (in
    its first line, or its second after a study's line)."""
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{TESTS}", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "camscope", "serve", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    said = []
    for _ in range(2):
        said.append(proc.stdout.readline() if proc.stdout else "")
        match = re.search(r"http://\S+?/(?=\s)", said[-1])
        if match:
            return proc, match.group(0)
    proc.kill()
    raise AssertionError(f"no address printed: {said!r} {proc.communicate()[0]!r}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


@contextlib.contextmanager
def serving(*options: str) -> Iterator[str]:
    """The URL of a `camscope serve --port 0 OPTIONS` process running for the block."""
    proc, url = start_server(*options)
    try:
        yield url
    finally:
        stop(proc)
