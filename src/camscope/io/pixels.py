"""Pixel values beyond 8-bit RGB: what a decoded image carries besides its picture.

:func:`camscope.io.load_image` returns an 8-bit RGB picture, which is what every drawing and RGB
model needs. When the file held more than that (16-bit or float grey, DICOM, NIfTI) the full
precision grey values and facts about the source (format, window, pixel spacing) travel with the
returned image object as a :class:`SourcePixels`: :func:`camscope.io.preprocess` reads them, so a
one-channel model sees the 16-bit values, not the 8-bit picture. Images derived from it (resized,
cropped, converted) are new objects and carry nothing, so stale values cannot leak into them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

_ATTRIBUTE = "_camscope_source"


@dataclass(frozen=True)
class SourcePixels:
    """What a loaded image holds beyond its 8-bit RGB picture.

    Attributes:
        grey: ``(H, W)`` float32 in [0, 1] at full precision (16-bit grey divided by 65535,
            float images, windowed DICOM/NIfTI values), or None for ordinary 8-bit pictures.
        meta: JSON-ready facts about the source: ``format``, ``bits`` and, for medical images,
            ``pixel_spacing_mm`` (row, column), ``window`` (centre, width) and how it was chosen.
    """

    grey: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def attach(image: Image.Image, source: SourcePixels) -> Image.Image:
    """Let ``image`` (this very object) carry ``source``; returns ``image``."""
    setattr(image, _ATTRIBUTE, source)
    return image


def source_pixels(image: Image.Image) -> SourcePixels | None:
    """The :class:`SourcePixels` that :func:`~camscope.io.load_image` attached, if any.

    Only the object ``load_image`` returned carries them, and only while its size still matches.
    """
    source = getattr(image, _ATTRIBUTE, None)
    if not isinstance(source, SourcePixels):
        return None
    if source.grey is not None and source.grey.shape != (image.height, image.width):
        return None
    return source


def image_meta(image: Image.Image) -> dict[str, Any]:
    """JSON-ready facts about where a loaded image came from (``{}`` when none were recorded)."""
    source = source_pixels(image)
    return dict(source.meta) if source is not None else {}


def grey_to_rgb(grey: np.ndarray) -> Image.Image:
    """A grey array in [0, 1] as an 8-bit RGB picture (rounded to the nearest level)."""
    levels = np.empty(grey.shape, dtype=np.uint8)
    np.rint(np.clip(grey, 0.0, 1.0) * np.float32(255.0), out=levels, casting="unsafe")
    return Image.fromarray(levels).convert("RGB")


def stretch(values: np.ndarray) -> np.ndarray:
    """Map values linearly from their min..max onto [0, 1] (float32); constant arrays give 0."""
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.all():
        values = np.where(finite, values, np.float32(0.0))
    if not values.size:
        return values
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    out = values - np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return out
