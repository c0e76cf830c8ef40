"""Pictures: heat-map overlays, guided-gradient images and method grids.

(Interface fixed; implementation in progress.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_COLORMAP = "inferno"


@dataclass
class Panel:
    """One cell of a grid: a title and either a heat map (H, W) in [0, 1] or an RGB image."""

    title: str
    heatmap: np.ndarray | None = None
    rgb: np.ndarray | None = None


def overlay(
    image: Image.Image, heatmap: np.ndarray, colormap: str = DEFAULT_COLORMAP, alpha: float = 0.5
) -> Image.Image:
    raise NotImplementedError


def guided_to_rgb(gradients: np.ndarray) -> np.ndarray:
    raise NotImplementedError


def save_grid(
    path: str | Path,
    image: Image.Image,
    rows: Sequence[tuple[str, Sequence[Panel]]],
    *,
    colormap: str = DEFAULT_COLORMAP,
    alpha: float = 0.5,
    title: str = "",
) -> None:
    raise NotImplementedError
