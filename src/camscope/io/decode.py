"""Decoding one image file or URL into an RGB picture, safely.

The pixel cap is checked from the header before any pixel is decoded; a JPEG whose data is too
short for its claimed size is reported as truncated before the decoder would fill the missing
part with grey (:mod:`.jpeg`); DICOM and NIfTI files go to :mod:`.medical`.

**PIL's process-wide settings stay as they are.** Nothing here writes ``PIL.Image.
MAX_IMAGE_PIXELS`` or ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``, installs warning filters or takes a
lock, so decodes in different threads (the web server's, the batch job's) run side by side and
other PIL code in the process sees its own settings:

* *Pixel cap.* The format's reader is built the way :func:`PIL.Image.open` builds it (PIL's
  registry of readers, ``Image.ID`` / ``Image.OPEN``), but without ``Image.open``'s bomb check
  against PIL's global limit: our ``max_pixels`` is checked instead, so a cap above PIL's limit
  works. A few of Pillow's readers also check sizes themselves while opening or loading (TIFF,
  WebP, MPO, GIF frames larger than their screen): for those, Pillow's own limit still applies,
  such a file more than twice ``MAX_IMAGE_PIXELS`` is refused with a message that names it, and
  between once and twice it Pillow emits its ``DecompressionBombWarning``.
* *Truncated data.* Decoding is strict: Pillow raises on missing or corrupt data, which becomes
  an :class:`~camscope.errors.ImageLoadError`. If ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` has
  been switched on in the process (by the program or another library), Pillow would fill
  missing data in silently and there is no per-call way to turn that off, so every PIL decode is
  refused with an error that says so and how to switch it off (DICOM and NIfTI, which do not go
  through PIL's decoders, are unaffected).

Memory: decoding costs the decoded picture (3 bytes per pixel) plus, for 16-bit and float
images, the full-precision grey values (4 bytes per pixel) and a transient copy of the raw
samples; nothing here works in float64 or keeps a second full-size copy.
"""

from __future__ import annotations

import io as _io
import logging
import re
import struct
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ..errors import ImageLoadError
from . import medical
from .download import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, download
from .jpeg import jpeg_shortfall
from .pixels import SourcePixels, attach, grey_to_rgb, image_meta, source_pixels, stretch

log = logging.getLogger(__name__)

__all__ = ["SourcePixels", "image_meta", "load_image", "source_pixels", "to_rgb_and_grey"]

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold
PHOTO_EXTENSIONS = (
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
IMAGE_EXTENSIONS = PHOTO_EXTENSIONS + medical.EXTENSIONS

_PIL_SIZE = re.compile(r"Image size \((\d+) pixels\)")


def is_url(item: str) -> bool:
    return "://" in item


def has_image_extension(name: str) -> bool:
    """Whether a file name ends in one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def load_image(
    source: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = 64 * 1024 * 1024,
    deadline: float | None = DEFAULT_DEADLINE,
    window: tuple[float, float] | None = None,
) -> Image.Image:
    """Read an image file or ``http(s)`` URL as an RGB PIL image.

    EXIF orientation is applied. Conversions to RGB: ``1``/``L`` grey is replicated;
    ``LA``/``RGBA``/``P`` with transparency are composited on white; ``CMYK`` uses PIL's
    conversion; 16-bit integer images (``I;16*``, and ``I`` when its values fit 0..65535) are
    rescaled by the type's range (value / 257, rounded: 65535 -> 255), not clipped; ``I`` with
    values outside 0..65535 and float ``F`` images outside [0, 1] are stretched from their
    min..max (deviation: there is no agreed range); ``F`` within [0, 1] is scaled by 255.
    For 16-bit and float images the unrounded grey values in [0, 1] travel with the returned
    image (:func:`source_pixels`), and :func:`camscope.io.preprocess` uses them.

    DICOM (``.dcm`` or the ``DICM`` signature) and NIfTI (``.nii``, ``.nii.gz``) files are read
    with pydicom and nibabel (``pip install camscope[medical]``): see :mod:`camscope.io.medical`
    for rescaling, windowing and orientation; their pixel spacing is in :func:`image_meta`.

    Args:
        max_pixels: refuse images with more pixels than this, checked from the header before
            decoding (decompression bombs).
        timeout: seconds a URL's server may stay silent (each network operation).
        max_bytes: largest download accepted.
        deadline: seconds a whole URL download may take (None: no total limit).
        window: ``(centre, width)`` for DICOM/NIfTI values, instead of the file's own window.

    Raises:
        ImageLoadError: with ``source`` and a ``reason`` that says what to do.
    """
    name = str(source)
    if isinstance(source, str) and is_url(source):
        scheme = source.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise ImageLoadError(
                name,
                f"unsupported URL scheme {scheme!r}; use http(s) URLs or download the file first",
            )
        data = download(name, timeout=timeout, deadline=deadline, max_bytes=max_bytes)
        kind = medical.sniff(source.split("?", 1)[0], data[: medical.SNIFF_BYTES])
        if kind is not None:
            return medical.load(kind, name, data, max_pixels=max_pixels, window=window)
        return _decode(name, _io.BytesIO(data), max_pixels)
    path = Path(source).expanduser()
    if not path.exists():
        raise ImageLoadError(name, "file not found; check the path")
    if path.is_dir():
        raise ImageLoadError(
            name,
            "is a folder, not an image; pass image files (or the folder on the CLI, which expands it)",
        )
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError(name, "file is empty (0 bytes); re-export or re-download it")
        with path.open("rb") as handle:
            kind = medical.sniff(path.name, handle.read(medical.SNIFF_BYTES))
            if kind is not None:
                return medical.load(kind, name, path, max_pixels=max_pixels, window=window)
            handle.seek(0)
            return _decode(name, handle, max_pixels)
    except OSError as err:
        raise ImageLoadError(name, f"cannot read the file ({err.strerror or err})") from err


def load_image_bytes(
    data: bytes,
    name: str = "upload",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    window: tuple[float, float] | None = None,
) -> Image.Image:
    """Decode an image held in memory (an upload) exactly as :func:`load_image` decodes a file
    (DICOM and NIfTI included).

    ``name`` only labels error messages (and its extension helps to recognise NIfTI); it is
    never opened.

    Raises:
        ImageLoadError: empty data, not an image, corrupt data, too many pixels.
    """
    if not data:
        raise ImageLoadError(name, "the upload is empty (0 bytes); choose an image file")
    kind = medical.sniff(name, data[: medical.SNIFF_BYTES])
    if kind is not None:
        return medical.load(kind, name, data, max_pixels=max_pixels, window=window)
    return _decode(name, _io.BytesIO(data), max_pixels)


def _too_many(name: str, pixels: str, max_pixels: int) -> ImageLoadError:
    return ImageLoadError(
        name,
        f"{pixels} pixels exceeds the limit of {max_pixels} (--max-pixels); raise it only if you "
        "trust the image",
    )


def _truncation_flag_on(name: str) -> ImageLoadError | None:
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        return None
    return ImageLoadError(
        name,
        "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is switched on in this process (by your code or "
        "another library): Pillow would then fill truncated or corrupt image data in without "
        "an error, so camscope decodes nothing; set PIL.ImageFile.LOAD_TRUNCATED_IMAGES = False",
    )


def _open(name: str, handle: IO[bytes]) -> ImageFile.ImageFile:
    """The format reader of ``handle``, built as :func:`PIL.Image.open` builds it (the first
    reader in PIL's registry whose ``accept`` takes the first 16 bytes and whose constructor
    parses the header), without :func:`PIL.Image.open`'s own decompression-bomb check against
    the process-wide ``Image.MAX_IMAGE_PIXELS``: the caller checks its own ``max_pixels``."""
    prefix = handle.read(16)
    tried: set[str] = set()
    for register in (Image.preinit, Image.init):  # common readers first, then every reader
        register()
        for kind in [k for k in Image.ID if k not in tried]:
            tried.add(kind)
            factory, accept = Image.OPEN[kind]
            verdict = accept(prefix) if accept else True
            if not verdict or isinstance(verdict, str):  # a str: "looks like it, unsupported"
                continue
            handle.seek(0)
            try:
                return factory(handle, "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue  # not this format after all (Image.open's rule)
    raise ImageLoadError(
        name,
        "not an image PIL can read (supported: "
        + ", ".join(IMAGE_EXTENSIONS)
        + "); check the file",
    )


def _pil_limit(name: str, err: Exception) -> ImageLoadError:
    found = _PIL_SIZE.search(str(err))
    return ImageLoadError(
        name,
        f"{found.group(1) if found else 'too many'} pixels exceed Pillow's own process-wide "
        f"limit (PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}, refused above twice "
        "that), which its reader for this format applies by itself; camscope never changes "
        "it: raise it in your program only if you trust the image",
    )


def _decode(name: str, handle: IO[bytes], max_pixels: int) -> Image.Image:
    """Decode with our own pixel cap, never touching PIL's process-wide settings (no lock, no
    warning filters: decodes in different threads run side by side)."""
    refused = _truncation_flag_on(name)
    if refused is not None:
        raise refused
    try:
        image = _open(name, handle)
        width, height = image.size
        if width * height > max_pixels:
            raise _too_many(name, f"{width} x {height} = {width * height}", max_pixels)
        if image.format == "JPEG":
            position = handle.tell()
            shortfall = jpeg_shortfall(handle)
            handle.seek(position)
            if shortfall:
                raise ImageLoadError(
                    name, f"truncated JPEG: {shortfall}; re-export or re-download it"
                )
        try:
            image.load()
        except OSError as err:
            raise ImageLoadError(
                name,
                f"corrupt or truncated image data ({err}); re-export or re-download it",
            ) from err
        refused = _truncation_flag_on(name)  # switched on by another thread meanwhile
        if refused is not None:
            raise refused
        rgb, grey = to_rgb_and_grey(_orient(image, name))
        if rgb is image:
            # Drop the reference to the encoded bytes, as PIL itself does after loading a
            # file it opened: the picture is decoded and the handle is about to close.
            setattr(rgb, "fp", None)  # noqa: B010
        bits = 16 if image.mode.startswith("I") else 32 if image.mode == "F" else 8
        return attach(rgb, SourcePixels(grey, {"format": image.format, "bits": bits}))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _pil_limit(name, err) from err
    except ImageLoadError:
        raise
    except Exception as err:  # PIL plugins raise many kinds on broken data
        raise ImageLoadError(
            name,
            f"corrupt or unreadable image data ({type(err).__name__}: {err}); re-export it",
        ) from err


def _orient(image: Image.Image, name: str) -> Image.Image:
    try:
        orientation = image.getexif().get(0x0112, 1)
        if orientation in (None, 1):
            return image  # nothing to rotate: no copy of a possibly huge picture
        rotated = ImageOps.exif_transpose(image)
    except Exception as err:  # broken EXIF must not lose the image
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", name, err)
        return image
    return image if rotated is None else rotated


def to_rgb_and_grey(image: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """The 8-bit RGB picture of any PIL image, and its full-precision grey values in [0, 1]
    (float32) for 16-bit and float modes (None otherwise). See :func:`load_image`."""
    mode = image.mode
    if mode == "RGB":
        return image, None
    if mode in ("1", "L"):
        return image.convert("L").convert("RGB"), None
    if mode == "P":
        has_alpha = "transparency" in image.info or (
            image.palette is not None and (image.palette.mode == "RGBA")
        )
        return (_on_white(image.convert("RGBA")) if has_alpha else image.convert("RGB")), None
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        return _on_white(image.convert("RGBA")), None
    if mode.startswith("I;16") or mode == "I":
        samples = np.asarray(image)
        if mode.startswith("I;16") or (
            samples.size and samples.min() >= 0 and samples.max() <= 65535
        ):
            grey = samples.astype(np.float32)
            grey *= np.float32(1.0 / 65535.0)
            # value / 257 rounded, in integers (exact; 257 is odd, so there are no ties)
            levels = ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)
            return Image.fromarray(levels).convert("RGB"), grey
        grey = stretch(samples)
        return grey_to_rgb(grey), grey
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            grey = values
        else:
            grey = stretch(values)
        return grey_to_rgb(grey), grey
    try:
        return image.convert("RGB"), None  # CMYK, YCbCr, HSV, ...
    except (ValueError, OSError) as err:
        raise ValueError(f"image mode {mode!r} cannot be converted to RGB") from err


def _on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
