"""Region masks: a picture that marks pixels (a segmentation region painted or saved by a tool).

:func:`load_mask` reads a mask file or upload and returns a boolean ``(height, width)`` array at
the size asked for (nearest neighbour, so a mask stays a mask). The region is:

* where the picture is not transparent, when it has an alpha channel (a brush stroke on a
  transparent canvas, as the viewer sends it);
* otherwise where it is not black (any channel above 0: white-on-black masks, label maps).

Example:
    >>> region = load_mask("person.png", (520, 520))  # doctest: +SKIP
    >>> region.dtype, region.shape  # doctest: +SKIP
    (dtype('bool'), (520, 520))
"""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageLoadError
from .decode import DEFAULT_MAX_PIXELS


def load_mask(
    source: str | Path | bytes,
    size: tuple[int, int],
    *,
    name: str = "mask",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """The region of a mask picture as a boolean array of ``size = (height, width)``.

    Raises:
        ImageLoadError: a missing, empty or unreadable file, too many pixels, or a mask that
            marks no pixel at all.
    """
    label = name if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ImageLoadError(label, "mask file not found; check the path")
        data = path.read_bytes()
    if not data:
        raise ImageLoadError(label, "the mask is empty (0 bytes)")
    try:
        with Image.open(_io.BytesIO(data)) as opened:
            if opened.width * opened.height > max_pixels:
                raise ImageLoadError(
                    label, f"the mask has {opened.width} x {opened.height} pixels, over the cap"
                )
            picture = opened.copy()
    except UnidentifiedImageError as err:  # its text names PIL's in-memory buffer, not the file
        raise ImageLoadError(label, "not a picture PIL can read; save it as PNG") from err
    except Image.DecompressionBombError as err:  # over twice PIL's own process-wide limit
        raise ImageLoadError(label, f"the mask has too many pixels ({err})") from err
    except OSError as err:
        raise ImageLoadError(label, f"not a picture PIL can read ({err}); save it as PNG") from err
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        plane = picture.convert("RGBA").getchannel("A")
    else:
        plane = picture.convert("L") if picture.mode not in ("I", "I;16", "F") else picture
    height, width = (int(v) for v in size)
    if plane.size != (width, height):
        plane = plane.resize((width, height), Image.Resampling.NEAREST)
    region = np.asarray(plane) > 0
    if not region.any():
        raise ImageLoadError(
            label, "the mask marks no pixel (all black or all transparent); paint the region"
        )
    return region
