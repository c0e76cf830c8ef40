"""``benchmarks/run_all.py`` (``make bench-gpu``) cannot rot: its table writer names the machine
and every row, and its smoke run goes through all four sections on the CPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "run_all.py"


def run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module  # dataclasses look their module up there
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # it puts benchmarks/ first: not for the other tests
    return module


def test_the_table_names_the_machine_and_keeps_every_row() -> None:
    module = run_all()
    rows = [
        module.Result("one-pass", "Grad-CAM, resnet50, batch 64", 812.25, "images/s", "forward"),
        module.Result("Score-CAM", "efficientnet_lite0 | blocks.6", 0.4123, "s/image"),
        module.Result("dataset", "FAILED: RuntimeError: out of memory", None, ""),
    ]
    facts = {"GPU": "NVIDIA H100 (CUDA 13.0)", "driver": "580.1", "torch": "2.14.1"}
    page = module.write_table(rows, facts, "camscope benchmarks, cuda, quick")
    lines = page.splitlines()
    assert lines[0] == "# camscope benchmarks, cuda, quick"
    assert "* **GPU**: NVIDIA H100 (CUDA 13.0)" in lines and "* **driver**: 580.1" in lines
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| benchmark | case | value | unit | against | ratio | note |"
    assert (
        table[1] == "| one-pass | Grad-CAM, resnet50, batch 64 | 812.2 | images/s | forward |  |  |"
    )
    assert table[2].startswith("| Score-CAM | efficientnet_lite0 / blocks.6 | 0.412 | s/image |")
    assert table[3].startswith("| dataset | FAILED: RuntimeError: out of memory | - |")
    cpu = module.machine("cpu")
    assert cpu["GPU"] == "none (CPU run)" and "torch" in cpu and "logical CPUs" in cpu["CPU"]


def test_the_quick_sizes_are_the_documented_ones() -> None:
    module = run_all()
    gpu = module.Scale.make("cuda", quick=True, smoke=False)
    assert (gpu.one_pass_model, gpu.one_pass_batch) == ("resnet50", 64)
    assert gpu.scorecam_models == ("efficientnet_lite0", "resnet50")
    assert (gpu.dataset_images, gpu.dataset_batches) == (2000, (32, 64))
    cpu = module.Scale.make("cpu", quick=True, smoke=False)
    assert (cpu.one_pass_batch, cpu.dataset_images, cpu.dataset_batches) == (8, 200, (16, 32))


@pytest.mark.slow
def test_the_smoke_run_fills_every_section(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ")[0][2:] for line in out.read_text().splitlines() if line[:2] == "| "]
    assert {"one-pass", "Score-CAM", "data-set", "training"} <= set(rows)
    assert "FAILED" not in out.read_text()
