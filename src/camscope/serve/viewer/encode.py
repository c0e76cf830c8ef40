"""Maps and pictures as the JSON of ``POST /api/explain`` carries them.

* ``map``: the map at the model's input resolution (what :func:`camscope.explain` returns, in
  [0, 1]) as little-endian float16, row-major, base64. float16 keeps about three decimal digits
  (steps of 2^-11 near 1), well below what a colour map can show, at half the bytes of float32.
* ``overlay_png``: the map over the picture with the requested colour map at opacity 0.5, drawn
  at the display copy of the picture (:func:`camscope.viz.to_display_rgb`, longer side at most
  :data:`DISPLAY_SIDE` pixels, never enlarged), PNG, base64. With several target classes the overlays stand side by side in target
  order. The overlays are :func:`camscope.viz.overlay`'s, so the viewer's downloads and the
  command line's files are the same pictures.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ...outputs import encoded

if TYPE_CHECKING:
    import torch

DISPLAY_SIDE = 1024
OVERLAY_ALPHA = 0.5


def map_entry(heatmap: torch.Tensor) -> dict[str, Any]:
    """The ``map`` (base64 of little-endian float16 bytes) and ``shape`` of one ``(H, W)`` or
    ``(K, H, W)`` float map in an answer."""
    array = heatmap.detach().to("cpu").float().numpy().astype("<f2")
    text = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
    return {"map": text, "shape": [int(v) for v in heatmap.shape]}


def map_from_base64(text: str, shape: list[int]) -> np.ndarray:
    """The inverse of :func:`map_entry` (float32 array of ``shape``)."""
    raw = np.frombuffer(base64.b64decode(text), dtype="<f2")
    return raw.reshape(shape).astype(np.float32)


def png_base64(image: Image.Image) -> str:
    # speed over size: the page is local
    return base64.b64encode(encoded(image, compress_level=1)).decode("ascii")


def overlay_png(display: Image.Image, maps: torch.Tensor, colormap: str) -> str:
    """Base64 PNG of each ``(K, H, W)`` map over ``display``, side by side."""
    from ... import io, viz

    size = (display.height, display.width)
    tiles = [viz.overlay(display, io.resize_map(m, size), colormap, OVERLAY_ALPHA) for m in maps]
    if len(tiles) == 1:
        return png_base64(tiles[0])
    strip = Image.new("RGB", (display.width * len(tiles), display.height))
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * display.width, 0))
    return png_base64(strip)
