"""Where images come from: command-line items expanded into files, and the demo images."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..errors import ImageLoadError
from .decode import IMAGE_EXTENSIONS, has_image_extension, is_url

log = logging.getLogger(__name__)

DEMO_IMAGES = ("chelsea", "coffee", "rocket", "astronaut")


def collect_inputs(items: Sequence[str]) -> list[str]:
    """Expand folders into the image files below them; keep everything else as given.

    Folders are walked recursively (symlinked folders are not followed); their files whose
    extension is in :data:`IMAGE_EXTENSIONS` (any case; ``.nii.gz`` counts) are added in sorted
    path order. Files and ``http(s)`` URLs are kept as given, also files that do not exist
    (``load_image`` then reports them). Repeats (the same file reached twice) are dropped; the
    first occurrence wins.

    >>> collect_inputs(["https://example.com/a.jpg", "https://example.com/a.jpg"])
    ['https://example.com/a.jpg']
    """
    out: list[str] = []
    seen: set[str] = set()

    def add(item: str) -> None:
        key = item if is_url(item) else os.path.normcase(os.path.abspath(item))
        if key not in seen:
            seen.add(key)
            out.append(item)

    for raw in items:
        item = str(raw)
        if not is_url(item) and os.path.isdir(item):
            found: list[str] = []
            for root, dirs, files in os.walk(item):
                dirs.sort()
                found.extend(os.path.join(root, f) for f in files if has_image_extension(f))
            if not found:
                log.warning("folder %s holds no images (%s)", item, ", ".join(IMAGE_EXTENSIONS))
            for path in sorted(found):
                add(path)
        else:
            add(item)
    return out


def demo_images() -> list[tuple[str, Image.Image]]:
    """The demo photos shipped inside scikit-image (no download): chelsea (a cat), coffee,
    rocket, astronaut, as ``[(name, RGB image)]``.
    """
    try:
        from skimage import data
    except ImportError as err:  # pragma: no cover - scikit-image is a dependency
        raise ImageLoadError("demo", "scikit-image is needed for the demo images") from err
    out: list[tuple[str, Image.Image]] = []
    for name in DEMO_IMAGES:
        try:
            array = getattr(data, name)()
        except Exception as err:
            raise ImageLoadError(
                name, f"scikit-image could not provide this demo image ({err}); reinstall it"
            ) from err
        out.append((name, Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")))
    return out
