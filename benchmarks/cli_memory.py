"""Peak memory of ``camscope explain`` against the input's pixel count (the bound in
docs/explain.md).

For a small image (the baseline: interpreter, torch, the default model) and large photos made by
upscaling scikit-image's chelsea (JPEG, quality 90), one ``camscope explain`` process per case
runs the six demo methods, and its peak resident memory (``VmHWM`` read at exit) is reported with the bytes per input pixel above the baseline. Also measured: the 641-byte JPEG
claiming 9000 x 9000 pixels (refused as truncated), ``--max-side 0`` (full-size overlays) and
``--save-npy --npy-size image``.

    python benchmarks/cli_memory.py [--sides 4000,9000] [--markdown]
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src"
METHODS = "gradcam,gradcam++,xgradcam,layercam,eigencam,guided-gradcam"


_WRAPPER = """
import atexit, runpy, sys
report = sys.argv[1]
def record():
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    open(report, "w").write(status.split()[0])
atexit.register(record)
sys.argv = ["camscope", *sys.argv[2:]]
runpy.run_module("camscope", run_name="__main__")
"""


def _peak_mib(command: list[str], folder: Path) -> float:
    """Peak resident memory (VmHWM, which exec resets, unlike ru_maxrss) of ``camscope ARGS``."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    report = folder / "vmhwm.txt"
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(report), *command],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"failed ({done.returncode}): {done.stderr[-2000:]}")
    return int(report.read_text()) / 1024.0  # kB


def _photo(path: Path, side: int) -> None:
    """chelsea upscaled to ``side`` pixels wide, made in a child process (this one stays small)."""
    code = (
        "import sys, numpy as np\n"
        "from PIL import Image\n"
        "from skimage import data\n"
        "small = Image.fromarray(np.asarray(data.chelsea(), dtype=np.uint8))\n"
        "side = int(sys.argv[2])\n"
        "small.resize((side, side * small.height // small.width)).save(sys.argv[1], quality=90)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(side)], check=True)


def _truncated(path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, 9000, 9000)
    scan = data.find(b"\xff\xda")
    end = scan + 2 + int.from_bytes(data[scan + 2 : scan + 4], "big") + 16
    path.write_bytes(bytes(data[:end]) + b"\xff\xd9")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="4000,9000", help="widths of the large photos")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="camscope-mem-") as tmp:
        folder = Path(tmp)
        cli = ["explain", "-m", METHODS, "--out"]
        small = folder / "small.jpg"
        _photo(small, 224)
        baseline = _peak_mib([*cli, str(folder / "o0"), str(small)], folder)
        with Image.open(small) as opened:
            rows.append(("224 px photo (baseline)", opened.width * opened.height, baseline))
        bomb = folder / "bomb.jpg"
        _truncated(bomb)
        rows.append(
            (
                "641-byte JPEG claiming 9000 x 9000",
                0,
                _peak_mib([*cli, str(folder / "o1"), str(bomb)], folder),
            )
        )
        for side in (int(s) for s in args.sides.split(",")):
            photo = folder / f"photo{side}.jpg"
            _photo(photo, side)
            with Image.open(photo) as opened:
                pixels = opened.width * opened.height
            out = str(folder / f"o{side}")
            rows.append(
                (
                    f"{side} px photo ({pixels / 1e6:.1f} MP)",
                    pixels,
                    _peak_mib([*cli, out, str(photo)], folder),
                )
            )
            full = _peak_mib([*cli, out, str(photo), "--max-side", "0"], folder)
            rows.append(("  same, --max-side 0", pixels, full))
            npy = _peak_mib([*cli, out, str(photo), "--save-npy", "--npy-size", "image"], folder)
            rows.append(("  same, --save-npy --npy-size image", pixels, npy))
    print(f"peak resident memory of one `camscope explain` process, methods {METHODS}")
    if args.markdown:
        print("| input | pixels | peak MiB | above baseline MiB | bytes per pixel |")
        print("|---|---|---|---|---|")
    for name, pixels, peak in rows:
        above = peak - baseline
        per_pixel = f"{above * 2**20 / pixels:.1f}" if pixels > 1e6 else "-"
        if args.markdown:
            print(f"| {name} | {pixels} | {peak:.0f} | {above:.0f} | {per_pixel} |")
        else:
            print(
                f"{name:40s} {pixels:>10d} px  peak {peak:7.0f} MiB  +{above:6.0f} MiB  {per_pixel} B/px"
            )


if __name__ == "__main__":
    main()
