"""Maps and pictures as the JSON of ``POST /api/explain`` carries them.

* ``map``: the map at the model's input resolution (what :func:`camscope.explain` returns, in
  [0, 1]) as little-endian float16, row-major, base64. float16 keeps about three decimal digits
  (steps of 2^-11 near 1), well below what a colour map can show, at half the bytes of float32.
* ``overlay_png``: the map over the picture with the requested colour map at opacity 0.5, drawn
  at the display copy of the picture (longer side at most :data:`DISPLAY_SIDE` pixels, never
  enlarged), PNG, base64. With several target classes the overlays stand side by side in target
  order. :func:`overlay` is :func:`camscope.viz.overlay`'s formula computed through the colour
  map's own table in float32 (about 5x faster; the same picture up to one level of rounding, as
  ``tests/serve/test_service.py`` checks).
"""

from __future__ import annotations

import base64
import functools
import io as _io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

DISPLAY_SIDE = 1024
OVERLAY_ALPHA = 0.5


def display_copy(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """The picture shrunk so its longer side is at most ``side`` (a copy; never enlarged)."""
    scale = side / max(image.size)
    if scale >= 1.0:
        return image.copy()
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def map_to_base64(heatmap: torch.Tensor) -> str:
    """``(H, W)`` or ``(K, H, W)`` float map -> base64 of little-endian float16 bytes."""
    array = heatmap.detach().to("cpu").float().numpy().astype("<f2")
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def map_from_base64(text: str, shape: list[int]) -> np.ndarray:
    """The inverse of :func:`map_to_base64` (float32 array of ``shape``)."""
    raw = np.frombuffer(base64.b64decode(text), dtype="<f2")
    return raw.reshape(shape).astype(np.float32)


def png_base64(image: Image.Image) -> str:
    buffer = _io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # speed over size: the page is local
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_bytes(image: Image.Image, compress_level: int = 6) -> bytes:
    buffer = _io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


@functools.lru_cache(maxsize=32)
def _table(colormap: str) -> np.ndarray:
    """The colour map's own ``(N, 3)`` table, scaled to 0..255 (float32)."""
    from ..viz import get_colormap

    cmap = get_colormap(colormap)
    return (np.asarray(cmap(np.arange(cmap.N)), dtype=np.float64)[:, :3] * 255.0).astype(np.float32)


def overlay(
    picture: Image.Image, heatmap: np.ndarray, colormap: str, alpha: float = OVERLAY_ALPHA
) -> Image.Image:
    """``round((1 - alpha) * picture + alpha * 255 * colormap(heatmap))``, as
    :func:`camscope.viz.overlay`; ``heatmap`` is ``(H, W)`` in [0, 1] at the picture's size.

    The colour of ``v`` is entry ``min(floor(N v), N - 1)`` of the map's ``N``-entry table, which is
    how matplotlib colours a value.
    """
    table = _table(colormap)
    index = np.minimum(
        (np.clip(heatmap, 0.0, 1.0) * table.shape[0]).astype(np.int32), table.shape[0] - 1
    )
    base = np.asarray(picture.convert("RGB"), dtype=np.float32)
    blended = (1.0 - alpha) * base + alpha * table[index]
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), mode="RGB")


def overlay_png(display: Image.Image, maps: torch.Tensor, colormap: str) -> str:
    """Base64 PNG of each ``(K, H, W)`` map over ``display``, side by side."""
    from .. import io

    size = (display.height, display.width)
    tiles = [overlay(display, io.resize_map(m, size), colormap) for m in maps]
    if len(tiles) == 1:
        return png_base64(tiles[0])
    strip = Image.new("RGB", (display.width * len(tiles), display.height))
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * display.width, 0))
    return png_base64(strip)
