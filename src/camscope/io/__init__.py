"""Image input: reading files and URLs safely, and turning pictures into model inputs.

Every problem with one input becomes an :class:`~camscope.errors.ImageLoadError` naming the input
and what to do about it, never a traceback: missing file, folder, empty file, not an image,
corrupt or truncated data, too many pixels, unsupported URL scheme or redirect, HTTP error,
timeout, download too large.

* :mod:`.decode`: :func:`load_image` and :func:`load_image_bytes` (photos through PIL; DICOM and NIfTI through
  :mod:`.medical`), the pixel cap, truncation checks, conversion to RGB with the full-precision
  grey values kept aside (:func:`source_pixels`);
* :mod:`.download`: ``http(s)`` downloads with a check of every redirect and a total deadline;
* :mod:`.medical`: DICOM (pydicom) and 2-D NIfTI (nibabel) slices, windowed, with pixel spacing;
* :mod:`.preprocess`: :func:`preprocess` into the ``(1, C, H, W)`` tensor the model expects,
  :func:`resize_map`, :func:`save_npy`;
* :mod:`.masks`: :func:`load_mask`, a region painted or saved as a picture (segmentation).

This package may import :mod:`camscope.errors` and the :class:`~camscope.models.ModelSpec` type
only.

Example:
    >>> from camscope.io import load_image, preprocess  # doctest: +SKIP
    >>> x = preprocess(load_image("cat.jpg"), spec)  # (1, 3, H, W) float32  # doctest: +SKIP
"""

from __future__ import annotations

from .decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    SourcePixels,
    image_meta,
    load_image,
    load_image_bytes,
    source_pixels,
)
from .download import DEFAULT_DEADLINE, DEFAULT_TIMEOUT
from .masks import load_mask
from .preprocess import model_channels, preprocess, resize_map, save_npy

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TIMEOUT",
    "IMAGE_EXTENSIONS",
    "SourcePixels",
    "image_meta",
    "load_image",
    "load_image_bytes",
    "load_mask",
    "model_channels",
    "preprocess",
    "resize_map",
    "save_npy",
    "source_pixels",
]
