"""Reading images safely and turning them into model inputs; writing arrays.

(Interface fixed; implementation in progress.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from torch import Tensor

    from .models import ModelSpec

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)
DEMO_IMAGES = ("chelsea", "coffee", "rocket", "astronaut")


def collect_inputs(items: Sequence[str]) -> list[str]:
    raise NotImplementedError


def load_image(
    source: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    timeout: float = 10.0,
    max_bytes: int = 64 * 1024 * 1024,
) -> Image.Image:
    raise NotImplementedError


def demo_images() -> list[tuple[str, Image.Image]]:
    raise NotImplementedError


def preprocess(image: Image.Image, spec: ModelSpec) -> Tensor:
    raise NotImplementedError


def resize_map(heatmap: Tensor, size: tuple[int, int]) -> np.ndarray:
    raise NotImplementedError


def save_npy(path: str | Path, array: np.ndarray) -> None:
    raise NotImplementedError
