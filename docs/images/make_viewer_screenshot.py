"""Regenerate docs/images/viewer.png: `.venv/bin/python docs/images/make_viewer_screenshot.py`.

The screenshot is the one the browser test takes (tests/serve/test_browser.py: a real
`camscope serve` process, Debian's chromium, chelsea explained with three methods at the first,
middle and last layer); this script runs that test and stores the picture with a 256-colour
palette so it stays small in the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "viewer.png"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "viewer.png"
        env = dict(os.environ, CAMSCOPE_VIEWER_SCREENSHOT=str(raw))
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])
        )
        test = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/serve/test_browser.py"]
        subprocess.run([sys.executable, *test], cwd=ROOT, env=env, check=True)
        image = Image.open(raw).convert("RGB")
        image = image.resize(
            (image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS
        )
        small = image.quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        small.save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
