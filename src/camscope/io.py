"""Reading images safely and turning them into model inputs; writing arrays.

Every problem with one input becomes an :class:`~camscope.errors.ImageLoadError` naming the input
and what to do about it, never a traceback: missing file, folder, empty file, not an image,
corrupt or truncated data, too many pixels, unsupported URL scheme, HTTP error, timeout, download
too large.

Example:
    >>> from camscope.io import load_image, preprocess  # doctest: +SKIP
    >>> x = preprocess(load_image("cat.jpg"), spec)  # (1, 3, H, W) float32  # doctest: +SKIP
"""

from __future__ import annotations

import io as _io
import logging
import os
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError, UsageError

if TYPE_CHECKING:
    from torch import Tensor

    from .models import ModelSpec

log = logging.getLogger(__name__)

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

_CHUNK = 64 * 1024
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_PIL_LIMIT_LOCK = threading.Lock()


def _is_url(item: str) -> bool:
    return "://" in item


def collect_inputs(items: Sequence[str]) -> list[str]:
    """Expand folders into the image files below them; keep everything else as given.

    Folders are walked recursively (symlinked folders are not followed); their files whose
    extension is in :data:`IMAGE_EXTENSIONS` (any case) are added in sorted path order. Files and
    ``http(s)`` URLs are kept as given, also files that do not exist (``load_image`` then reports
    them). Repeats (the same file reached twice) are dropped; the first occurrence wins.

    >>> collect_inputs(["https://example.com/a.jpg", "https://example.com/a.jpg"])
    ['https://example.com/a.jpg']
    """
    out: list[str] = []
    seen: set[str] = set()

    def add(item: str) -> None:
        key = item if _is_url(item) else os.path.normcase(os.path.abspath(item))
        if key not in seen:
            seen.add(key)
            out.append(item)

    for raw in items:
        item = str(raw)
        if not _is_url(item) and os.path.isdir(item):
            found: list[str] = []
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for fname in files:
                    if os.path.splitext(fname)[1].lower() in IMAGE_EXTENSIONS:
                        found.append(os.path.join(root, fname))
            if not found:
                log.warning("folder %s holds no images (%s)", item, ", ".join(IMAGE_EXTENSIONS))
            for path in sorted(found):
                add(path)
        else:
            add(item)
    return out


def load_image(
    source: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    timeout: float = 10.0,
    max_bytes: int = 64 * 1024 * 1024,
) -> Image.Image:
    """Read an image file or ``http(s)`` URL as an RGB PIL image.

    EXIF orientation is applied. Conversions to RGB: ``1``/``L`` grey is replicated;
    ``LA``/``RGBA``/``P`` with transparency are composited on white; ``CMYK`` uses PIL's
    conversion; 16-bit integer images (``I;16*``, and ``I`` when its values fit 0..65535) are
    rescaled by the type's range (value / 257, rounded: 65535 -> 255), not clipped; ``I`` with
    values outside 0..65535 and float ``F`` images outside [0, 1] are stretched from their
    min..max (deviation: there is no agreed range); ``F`` within [0, 1] is scaled by 255.

    Args:
        max_pixels: refuse images with more pixels than this, checked from the header before
            decoding (decompression bombs).
        timeout: seconds a URL may stay silent (per network operation).
        max_bytes: largest download accepted.

    Raises:
        ImageLoadError: with ``source`` and a ``reason`` that says what to do.
    """
    name = str(source)
    if isinstance(source, str) and _is_url(source):
        scheme = source.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise ImageLoadError(
                name,
                f"unsupported URL scheme {scheme!r}; use http(s) URLs or download the file first",
            )
        data = _download(name, timeout=timeout, max_bytes=max_bytes)
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
        size = path.stat().st_size
        if size == 0:
            raise ImageLoadError(name, "file is empty (0 bytes); re-export or re-download it")
        with path.open("rb") as handle:
            return _decode(name, handle, max_pixels)
    except OSError as err:
        raise ImageLoadError(name, f"cannot read the file ({err.strerror or err})") from err


def load_image_bytes(
    data: bytes, name: str = "upload", *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode an image held in memory (an upload) exactly as :func:`load_image` decodes a file.

    ``name`` only labels error messages; it is never opened.

    Raises:
        ImageLoadError: empty data, not an image, corrupt data, too many pixels.
    """
    if not data:
        raise ImageLoadError(name, "the upload is empty (0 bytes); choose an image file")
    return _decode(name, _io.BytesIO(data), max_pixels)


def _download(url: str, *, timeout: float, max_bytes: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "camscope"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ImageLoadError(
                    url,
                    f"download is {int(declared)} bytes, more than the limit of {max_bytes} bytes; "
                    "raise max_bytes if you trust it or download the file yourself",
                )
            chunks: list[bytes] = []
            total = 0
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise ImageLoadError(
                        url,
                        f"download exceeds the limit of {max_bytes} bytes; raise max_bytes if you "
                        "trust it or download the file yourself",
                    )
                chunks.append(chunk)
    except ImageLoadError:
        raise
    except urllib.error.HTTPError as err:
        raise ImageLoadError(
            url, f"server answered HTTP {err.code} {err.reason}; check the URL"
        ) from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise ImageLoadError(url, _timeout_reason(timeout)) from err
        raise ImageLoadError(
            url, f"cannot reach the server ({err.reason}); check the URL and your network"
        ) from err
    except TimeoutError as err:  # socket.timeout is TimeoutError on Python >= 3.10
        raise ImageLoadError(url, _timeout_reason(timeout)) from err
    except (OSError, ValueError) as err:
        raise ImageLoadError(url, f"download failed ({err}); check the URL") from err
    data = b"".join(chunks)
    if not data:
        raise ImageLoadError(url, "the server sent an empty body; check the URL")
    return data


def _timeout_reason(timeout: float) -> str:
    return f"no answer within {timeout:g} s; check the URL or allow a longer timeout"


def _decode(name: str, handle: IO[bytes], max_pixels: int) -> Image.Image:
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        # Our own cap replaces PIL's global one; PIL's warning/error become ImageLoadError.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max(int(max_pixels), 1)
        try:
            try:
                image = Image.open(handle)
            except UnidentifiedImageError as err:
                raise ImageLoadError(
                    name,
                    "not an image PIL can read (supported: "
                    + ", ".join(IMAGE_EXTENSIONS)
                    + "); check the file",
                ) from err
            width, height = image.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    name,
                    f"{width} x {height} = {width * height} pixels exceeds the limit of "
                    f"{max_pixels} (--max-pixels); raise it only if you trust the image",
                )
            try:
                image.load()
            except OSError as err:
                raise ImageLoadError(
                    name,
                    f"corrupt or truncated image data ({err}); re-export or re-download it",
                ) from err
            return _to_rgb(_orient(image, name))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageLoadError(
                name,
                f"too many pixels ({err}); raise --max-pixels (now {max_pixels}) only if you "
                "trust the image",
            ) from err
        except ImageLoadError:
            raise
        except Exception as err:  # PIL plugins raise many kinds on broken data
            raise ImageLoadError(
                name,
                f"corrupt or unreadable image data ({type(err).__name__}: {err}); re-export it",
            ) from err
        finally:
            Image.MAX_IMAGE_PIXELS = saved_limit


def _orient(image: Image.Image, name: str) -> Image.Image:
    try:
        rotated = ImageOps.exif_transpose(image)
    except Exception as err:  # broken EXIF must not lose the image
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", name, err)
        return image
    return image if rotated is None else rotated


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in ("1", "L"):
        return image.convert("L").convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in image.info or (
            image.palette is not None and (image.palette.mode == "RGBA")
        )
        if not has_alpha:
            return image.convert("RGB")
        return _on_white(image.convert("RGBA"))
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        return _on_white(image.convert("RGBA"))
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.int64)
        if mode.startswith("I;16") or (values.size and values.min() >= 0 and values.max() <= 65535):
            grey = np.rint(values / 257.0)
        else:
            grey = _stretch(values.astype(np.float64))
        return _grey_to_rgb(grey)
    if mode == "F":
        values = np.asarray(image).astype(np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            grey = np.rint(values * 255.0)
        else:
            grey = _stretch(values)
        return _grey_to_rgb(grey)
    if mode in ("L;16",):  # pragma: no cover - rare raw modes
        return image.convert("RGB")
    try:
        return image.convert("RGB")  # CMYK, YCbCr, HSV, ...
    except (ValueError, OSError) as err:
        raise ValueError(f"image mode {mode!r} cannot be converted to RGB") from err


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if high <= low:
        return np.zeros_like(values)
    return np.rint((values - low) * (255.0 / (high - low)))


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).convert("RGB")


def _on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


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


def preprocess(image: Image.Image, spec: ModelSpec) -> Tensor:
    """Turn an image into the normalised ``(1, 3, H, W)`` float32 batch the model expects.

    The whole image is resized to ``spec.input_size`` with ``spec.interpolation`` (PIL, with its
    antialiasing) and no centre crop, so the map covers every pixel (deviation from the usual
    resize + crop evaluation recipe; the aspect ratio is not kept). Then
    ``x = (pixel / 255 - mean) / std`` per channel.
    """
    import torch

    height, width = (int(v) for v in spec.input_size)
    resample = _RESAMPLE.get(spec.interpolation)
    if resample is None:
        raise UsageError(
            f"interpolation {spec.interpolation!r} is not one of {', '.join(_RESAMPLE)}"
        )
    rgb = image if image.mode == "RGB" else _to_rgb(image)
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), resample=resample)
    array = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    array = (array - mean) / std
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None].float()


def resize_map(heatmap: Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize an ``(h, w)`` map in [0, 1] to ``size = (height, width)``.

    Returns float32 numpy, clamped to [0, 1] (bilinear interpolation cannot overshoot, the clamp
    only guards against inputs slightly outside the range). Leading singleton dimensions are
    dropped.
    """
    import torch
    import torch.nn.functional as F

    tensor = torch.as_tensor(heatmap).detach().to("cpu", torch.float32)
    while tensor.ndim > 2 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 2:
        raise UsageError(f"resize_map expects an (h, w) map, got shape {list(tensor.shape)}")
    height, width = (int(v) for v in size)
    if height <= 0 or width <= 0:
        raise UsageError(f"resize_map size must be positive (height, width), got {size}")
    if tuple(tensor.shape) != (height, width):
        tensor = F.interpolate(
            tensor[None, None], size=(height, width), mode="bilinear", align_corners=False
        )[0, 0]
    return tensor.clamp(0.0, 1.0).numpy().astype(np.float32, copy=False)


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` (numpy or tensor) as float32 ``.npy``, creating parent folders."""
    if hasattr(array, "detach"):  # a tensor passed by mistake is accepted too
        array = array.detach().cpu().numpy()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, np.asarray(array, dtype=np.float32))
