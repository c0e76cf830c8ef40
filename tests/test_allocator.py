"""The glibc allocator tuning: fewer page faults for repeated large buffers, the user's
environment wins, the CLI applies it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from camscope import allocator

FAULTS = """
import resource, sys
import torch
from camscope.allocator import tune_allocator
if sys.argv[1] == "tuned":
    assert tune_allocator()
x = torch.ones(10_000_000)  # 40 MB buffers: above glibc's largest dynamic mmap threshold
for _ in range(3):
    (x * 2).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    (x * 2).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in allocator.ENVIRONMENT}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_tuning_stops_refaulting_large_buffers() -> None:
    plain, tuned = page_faults("plain"), page_faults("tuned")
    assert plain > 20 * 9000  # every 40 MB buffer faulted in again (about 9800 pages each)
    assert tuned < plain / 4


def test_the_environment_wins(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert allocator.tune_allocator() is False


def test_the_command_line_applies_it(monkeypatch, capsys) -> None:
    from camscope.cli import main as cli

    calls: list[int] = []
    monkeypatch.setattr(cli, "tune_allocator", lambda: calls.append(1) or True)
    assert cli.main(["methods"]) == 0
    assert calls == [1]
