"""DICOM and 2-D NIfTI images, read like any other image (``pip install camscope[medical]``).

**DICOM** (pydicom): the stored values go through the Modality LUT or Rescale Slope/Intercept
(pydicom's ``apply_modality_lut``), then through a window: ``window=(centre, width)`` when given
(``--window C,W``), else the file's first Window Center/Width (with its VOI LUT Function), else the
values' own min..max (deviation: the standard leaves that case to the viewer). The window maps
onto [0, 1] as in DICOM PS3.3 C.11.2.1.2 (LINEAR: ``(x - (c - 0.5)) / (w - 1) + 0.5`` clipped;
LINEAR_EXACT: ``(x - c) / w + 0.5`` clipped; SIGMOID: ``1 / (1 + exp(-4 (x - c) / w))``), and
MONOCHROME1 is inverted so that higher values are always brighter. RGB and YBR files keep their
colours (pydicom converts YBR to RGB). Multi-frame files are refused: export the frame you want.

**NIfTI** (nibabel, ``.nii`` and ``.nii.gz``): a volume with one non-singleton axis pair (a 2-D
slice) is scaled by its ``scl_slope``/``scl_inter``, windowed like DICOM (``window`` or min..max)
and shown with the first voxel axis across and the second axis up (``picture = flipud(data.T)``,
the usual radiological display of an axial slice). 3-D volumes are refused: save the slice you
want.

The windowed grey values stay at full precision (:class:`~camscope.io.SourcePixels`), and the pixel
spacing (mm per row and per column: DICOM Pixel Spacing, else Imager Pixel Spacing; NIfTI zooms)
is in :func:`~camscope.io.image_meta`, which ``camscope explain`` copies into ``summary.json``.
"""

from __future__ import annotations

import gzip
import io as _io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImageLoadError
from .pixels import SourcePixels, attach, grey_to_rgb, stretch

EXTENSIONS = (".dcm", ".dicom", ".nii", ".nii.gz")
SNIFF_BYTES = 352
_INSTALL = "pip install 'camscope[medical]'"


def sniff(name: str, head: bytes) -> str | None:
    """``"dicom"``, ``"nifti"`` or None, from the file name and its first bytes."""
    lower = name.lower()
    if lower.endswith((".dcm", ".dicom")) or head[128:132] == b"DICM":
        return "dicom"
    if lower.endswith((".nii", ".nii.gz")) or head[344:348] in (b"n+1\0", b"ni1\0"):
        return "nifti"
    if head[4:8] == b"n+2\0":
        return "nifti"
    return None


def load(
    kind: str,
    name: str,
    data: bytes | Path,
    *,
    max_pixels: int,
    window: tuple[float, float] | None,
) -> Image.Image:
    """Decode a DICOM or NIfTI file (path or downloaded bytes) into an RGB picture."""
    if kind == "dicom":
        return _dicom(name, data, max_pixels, window)
    return _nifti(name, data, max_pixels, window)


def apply_window(
    values: np.ndarray, centre: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """Map values through a DICOM window onto [0, 1] (float32), see the module docstring.

    >>> apply_window(np.array([0.0, 40.0, 80.0, 500.0]), 40.5, 81.0).tolist()
    [0.0, 0.5, 1.0, 1.0]
    """
    x = np.asarray(values, dtype=np.float32)
    function = function.upper()
    if function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"window width must be > 0 for SIGMOID, got {width:g}")
        return (1.0 / (1.0 + np.exp(-4.0 * (x - np.float32(centre)) / np.float32(width)))).astype(
            np.float32
        )
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"window width must be > 0, got {width:g}")
        c, w = float(centre), float(width)
    else:
        if width < 1:
            raise ValueError(f"window width must be >= 1 for LINEAR, got {width:g}")
        c, w = float(centre) - 0.5, float(width) - 1.0
    if w == 0:
        return (x > np.float32(c)).astype(np.float32)
    out = (x - np.float32(c)) * np.float32(1.0 / w) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _first(value: Any) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _dicom(
    name: str, data: bytes | Path, max_pixels: int, window: tuple[float, float] | None
) -> Image.Image:
    try:
        import pydicom
    except ImportError as err:
        raise ImageLoadError(name, f"reading DICOM needs pydicom: {_INSTALL}") from err
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import (  # type: ignore[no-redef]
            apply_modality_lut,
        )
    source = _io.BytesIO(data) if isinstance(data, bytes) else str(data)
    try:
        ds = pydicom.dcmread(source, force=True)
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as err:
        raise ImageLoadError(name, f"not a readable DICOM image ({err}); check the file") from err
    if not any(key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageLoadError(name, "DICOM file without pixel data (not an image); check the file")
    if rows * columns > max_pixels:
        raise ImageLoadError(
            name,
            f"{columns} x {rows} = {rows * columns} pixels exceeds the limit of {max_pixels} "
            "(--max-pixels); raise it only if you trust the image",
        )
    if frames > 1:
        raise ImageLoadError(
            name, f"DICOM with {frames} frames; camscope reads 2-D images: export one frame"
        )
    try:
        array = ds.pixel_array
    except Exception as err:  # missing decoder plugin, truncated or inconsistent pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        compressed = syntax is not None and getattr(syntax, "is_compressed", False)
        hint = (
            f"compressed DICOM ({syntax.name}) needs a decoder: pip install pylibjpeg "
            "pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm), or decompress the file"
            if compressed and syntax is not None
            else "corrupt or truncated pixel data; re-export it"
        )
        raise ImageLoadError(name, f"{hint} ({err})") from err
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    meta: dict[str, Any] = {
        "format": "DICOM",
        "bits": int(ds.get("BitsStored", 8) or 8),
        "photometric": photometric,
        "modality": str(ds.get("Modality", "")),
        "pixel_spacing_mm": _spacing(ds),
    }
    if array.ndim == 3 and array.shape[-1] == 3:  # RGB (YBR already converted by pydicom)
        rgb = np.asarray(array)
        if rgb.dtype != np.uint8:
            rgb = np.rint(stretch(rgb) * 255.0).astype(np.uint8)
        return attach(Image.fromarray(rgb, mode="RGB"), SourcePixels(None, meta))
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or array.ndim != 2:
        raise ImageLoadError(
            name, f"DICOM photometric interpretation {photometric} is not supported; export as RGB"
        )
    values = np.asarray(apply_modality_lut(array, ds), dtype=np.float32)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        meta["rescale"] = [
            float(ds.get("RescaleSlope", 1.0)),
            float(ds.get("RescaleIntercept", 0.0)),
        ]
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        window, meta["window_source"] = (_first(ds.WindowCenter), _first(ds.WindowWidth)), "file"
    elif window is not None:
        function, meta["window_source"] = "LINEAR", "--window"
    grey = _window(name, values, window, function, meta)
    if photometric == "MONOCHROME1":
        grey = np.float32(1.0) - grey  # lowest values are white in MONOCHROME1
    return attach(grey_to_rgb(grey), SourcePixels(grey, meta))


def _window(
    name: str,
    values: np.ndarray,
    window: tuple[float, float] | None,
    function: str,
    meta: dict[str, Any],
) -> np.ndarray:
    if window is None:
        meta["window"], meta["window_source"] = None, "min-max"
        return stretch(values)
    meta["window"] = [float(window[0]), float(window[1])]
    try:
        return apply_window(values, window[0], window[1], function)
    except ValueError as err:
        raise ImageLoadError(name, f"{err}; pass --window CENTRE,WIDTH") from err


def _spacing(ds: Any) -> list[float] | None:
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(key)
        if value is not None:
            try:
                return [float(v) for v in value][:2]
            except (TypeError, ValueError):
                return None
    return None


def _nifti(
    name: str, data: bytes | Path, max_pixels: int, window: tuple[float, float] | None
) -> Image.Image:
    try:
        import nibabel
    except ImportError as err:
        raise ImageLoadError(name, f"reading NIfTI needs nibabel: {_INSTALL}") from err
    raw = data.read_bytes() if isinstance(data, Path) else data
    if raw[:2] == b"\x1f\x8b":  # gzip: cap what it may expand to (a 2-D slice is small)
        limit = max_pixels * 8 + 1024 * 1024
        try:
            with gzip.GzipFile(fileobj=_io.BytesIO(raw)) as stream:
                raw = stream.read(limit + 1)
        except (OSError, EOFError) as err:
            raise ImageLoadError(name, f"corrupt gzip data ({err}); re-export it") from err
        if len(raw) > limit:
            raise ImageLoadError(
                name, "NIfTI data larger than a 2-D slice under --max-pixels; save one slice"
            )
    try:
        kind = nibabel.Nifti2Image if raw[4:8] == b"n+2\0" else nibabel.Nifti1Image
        volume = kind.from_bytes(raw)
        shape = tuple(int(d) for d in volume.shape)
        zooms = [float(z) for z in volume.header.get_zooms()]
    except Exception as err:
        raise ImageLoadError(name, f"not a readable NIfTI image ({err}); check the file") from err
    axes = [i for i, d in enumerate(shape) if d > 1]
    if len(axes) > 2:
        raise ImageLoadError(
            name,
            f"NIfTI volume of shape {shape}; camscope reads 2-D slices: save the slice you want",
        )
    axes = (axes + [i for i in range(len(shape)) if i not in axes])[:2]
    pixels = int(np.prod([shape[i] for i in axes])) if axes else 1
    if pixels > max_pixels:
        raise ImageLoadError(
            name, f"{pixels} pixels exceeds the limit of {max_pixels} (--max-pixels)"
        )
    try:
        values = np.asarray(volume.get_fdata(dtype=np.float32)).reshape(
            [shape[i] for i in axes] if len(axes) == 2 else [shape[axes[0]], 1]
        )
    except Exception as err:
        raise ImageLoadError(
            name, f"corrupt or truncated NIfTI data ({err}); re-export it"
        ) from err
    picture = np.ascontiguousarray(np.flipud(values.T))  # first axis across, second axis up
    units = volume.header.get_xyzt_units()[0]
    meta: dict[str, Any] = {
        "format": "NIfTI",
        "bits": int(volume.header.get_data_dtype().itemsize * 8),
        "pixel_spacing_mm": [zooms[axes[1]], zooms[axes[0]]]
        if len(axes) == 2 and len(zooms) > max(axes) and units in ("mm", "unknown")
        else None,
        "spacing_units": units,
    }
    grey = _window(name, picture, window, "LINEAR", meta)
    if window is not None:
        meta["window_source"] = "--window"
    return attach(grey_to_rgb(grey), SourcePixels(grey, meta))
