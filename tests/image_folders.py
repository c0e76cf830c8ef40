"""Image folders for the data-set job tests (``tests/batch``, ``tests/cli``): images of mixed
sizes, modes and formats, and files that only look like images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TESTS = Path(__file__).resolve().parent
MODEL = f"{TESTS / 'nets.py'}:dataset_classifier"
GOOD = 9  # readable images in the folder fixture
# The broken files and a word of the reason camscope.io gives for each.
BROKEN = {"notes.jpg": "not an image", "empty.png": "empty", "half.jpg": "truncated"}


def make_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` images of mixed sizes, modes and formats below ``folder``; returns their ids."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(count):
        height, width = (int(v) for v in rng.integers(24, 120, size=2))
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if i % 4 == 1:
            image = image.convert("L")
        elif i % 4 == 2:
            image = image.convert("RGBA")
        sub = "b/" if i % 3 == 0 else "a/" if i % 3 == 1 else ""
        name = f"{sub}img{i:03d}.{'jpg' if i % 2 and image.mode != 'RGBA' else 'png'}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / name)
        ids.append(name)
    return ids


def add_broken_files(folder: Path) -> None:
    (folder / "notes.jpg").write_text("a text file with an image's name")
    (folder / "empty.png").write_bytes(b"")
    whole = folder / "_whole.jpg"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(whole, quality=95)
    data = whole.read_bytes()
    whole.unlink()
    (folder / "half.jpg").write_bytes(data[: len(data) // 2])
