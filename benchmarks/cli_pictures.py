"""What ``camscope explain`` costs beyond the maps: the CLI against the library calls alone.

Twenty demo-size images (scikit-image's chelsea, coffee, rocket and astronaut, five copies each,
as PNG files) are explained with the six demo methods by

* ``library``: a fresh Python process that imports camscope, tunes the allocator as the command
  does, loads the default model and, per image, calls ``io.load_image``, ``io.preprocess`` and
  ``camscope.explain`` (nothing written);
* ``cli``: ``python -m camscope explain DIR --out TMP -m <six methods>`` (overlays, grids and
  ``summary.json`` written), and the same with ``--image-format jpg``, ``--no-overlays`` and
  ``--no-grid``;
* optionally ``cli (other tree)``: the same command run from another source tree (``--before
  PATH/src``), e.g. the main branch before this change.

Both sides include the interpreter start, the imports and the model load. Cases are interleaved
(one run of each per round) and the median of the rounds is reported, with the ratio to the
library. Target: the CLI's default run at most 2x the library.

    python benchmarks/cli_pictures.py --repeats 3 [--before /path/to/other/src] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src"
METHODS = "gradcam,gradcam++,xgradcam,layercam,eigencam,guided-gradcam"

LIBRARY = """
import sys
from pathlib import Path
import camscope
from camscope import io
from camscope.allocator import tune_allocator
tune_allocator()  # as the camscope command does (README: "In your own scripts call ...")
model, spec = camscope.load_model()
for path in sorted(Path(sys.argv[1]).glob("*.png")):
    x = io.preprocess(io.load_image(path), spec)
    camscope.explain(model, x, sys.argv[2].split(","))
"""


def _images(folder: Path, copies: int) -> None:
    from skimage import data

    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        picture = Image.fromarray(np.asarray(getattr(data, name)(), dtype=np.uint8)).convert("RGB")
        for i in range(copies):
            picture.save(folder / f"{name}-{i}.png")


def _wall(command: list[str], src: Path, threads: int | None) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    if threads is not None:  # OpenMP threads of torch (intra-op), the same in every case
        env["OMP_NUM_THREADS"] = str(threads)
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=5, help="copies of each demo image")
    parser.add_argument("--before", type=Path, default=None, help="another source tree's src/")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS for every case (default: torch's own choice); 1 is steadier on a "
        "machine shared with other jobs, where spinning OpenMP threads wait for each other",
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="camscope-bench-") as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        _images(images, args.copies)
        count = len(list(images.glob("*.png")))
        out = Path(tmp) / "out"
        cli = [sys.executable, "-m", "camscope", "explain", str(images), "-m", METHODS]
        cases: dict[str, tuple[list[str], Path]] = {
            "library": ([sys.executable, "-c", LIBRARY, str(images), METHODS], SRC),
            "cli": ([*cli, "--out", str(out / "png")], SRC),
            "cli --image-format jpg": (
                [*cli, "--out", str(out / "jpg"), "--image-format", "jpg"],
                SRC,
            ),
            "cli --no-overlays": ([*cli, "--out", str(out / "grid"), "--no-overlays"], SRC),
            "cli --no-grid": ([*cli, "--out", str(out / "overlays"), "--no-grid"], SRC),
        }
        if args.before is not None:
            cases["cli (other tree)"] = ([*cli, "--out", str(out / "before")], args.before)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (command, src) in cases.items():
                times[name].append(_wall(command, src, args.threads))
    library = statistics.median(times["library"])
    rows = [
        (name, statistics.median(values), min(values), statistics.median(values) / library)
        for name, values in times.items()
    ]
    threads = args.threads or "default"
    print(
        f"{count} images, methods {METHODS}, {args.repeats} rounds, {os.cpu_count()} CPUs, "
        f"torch threads: {threads}"
    )
    if args.markdown:
        print("| case | median s | best s | x library |")
        print("|---|---|---|---|")
        for name, median, best, ratio in rows:
            print(f"| {name} | {median:.2f} | {best:.2f} | {ratio:.2f}x |")
    else:
        for name, median, best, ratio in rows:
            print(f"{name:26s} median {median:7.2f} s  best {best:7.2f} s  {ratio:5.2f}x library")


if __name__ == "__main__":
    main()
