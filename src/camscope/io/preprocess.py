"""Pictures into model inputs (:func:`preprocess`), maps back to pictures (:func:`resize_map`),
maps to disk (:func:`save_npy`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..outputs import write_atomic
from .decode import to_rgb_and_grey
from .pixels import source_pixels

if TYPE_CHECKING:
    from torch import Tensor

    from ..models import ModelSpec

#: The PIL resampling filter of each interpolation name a ModelSpec may give.
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
# ITU-R BT.601 luma weights, the ones PIL's convert("L") uses (here without rounding to 8 bits).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def model_channels(spec: ModelSpec | Any) -> int:
    """Channels the model reads: ``spec.channels`` when set, else one per ``spec.mean`` value."""
    channels = getattr(spec, "channels", None)
    return int(channels) if channels else len(tuple(spec.mean))


def _per_channel(values: Any, channels: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    if array.size == 1:
        return np.repeat(array, channels)
    if array.size != channels:
        raise UsageError(
            f"the model spec's {what} has {array.size} values for a {channels}-channel model; "
            f"give one value or {channels} (--{what})"
        )
    return array


def preprocess(image: Image.Image, spec: ModelSpec) -> Tensor:
    """Turn an image into the normalised ``(1, C, H, W)`` float32 batch the model expects.

    ``C`` is :func:`model_channels` (3 or 1). The whole image is resized to ``spec.input_size``
    with ``spec.interpolation`` (PIL, with its antialiasing) and no centre crop, so the map covers
    every pixel (deviation from the usual resize + crop evaluation recipe; the aspect ratio is not
    kept). Then ``x = (value - mean) / std`` per channel, with values in [0, 1]:

    * an 8-bit picture gives ``pixel / 255`` (RGB), or for one channel its luma
      ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, unrounded);
    * an image that carries full-precision grey values (16-bit and float files, DICOM, NIfTI,
      see :func:`camscope.io.source_pixels`; also ``I;16``/``I``/``F`` PIL images given directly)
      gives those values, resized in float32: 16 bits of precision reach the model, repeated on
      the three channels for an RGB model.

    Raises:
        UsageError: a spec for another number of channels, mean/std of the wrong length, or an
            unknown interpolation.
    """
    import torch

    channels = model_channels(spec)
    if channels not in (1, 3):
        raise UsageError(
            f"the model reads {channels} channels; camscope's preprocessing makes grey (1) or "
            "RGB (3) inputs: build the input tensor yourself"
        )
    mean = _per_channel(spec.mean, channels, "mean")
    std = _per_channel(spec.std, channels, "std")
    if not np.all(std > 0):
        raise UsageError(f"the model spec's std must be positive, got {std.tolist()}")
    height, width = (int(v) for v in spec.input_size)
    resample = RESAMPLE.get(spec.interpolation)
    if resample is None:
        raise UsageError(
            f"interpolation {spec.interpolation!r} is not one of {', '.join(RESAMPLE)}"
        )
    source = source_pixels(image)
    grey = source.grey if source is not None else None
    if grey is None and (image.mode.startswith("I") or image.mode == "F"):
        grey = to_rgb_and_grey(image)[1]
    if grey is not None:
        plane = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32))
        if plane.size != (width, height):
            plane = plane.resize((width, height), resample=resample)
        values = np.asarray(plane, dtype=np.float32)[None]
        array = values if channels == 1 else np.repeat(values, 3, axis=0)
    else:
        rgb = image if image.mode == "RGB" else to_rgb_and_grey(image)[0]
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), resample=resample)
        array = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
        if channels == 1:
            array = np.tensordot(_LUMA, array, axes=1)[None]
    array = (array - mean[:, None, None]) / std[:, None, None]
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]


def resize_map(heatmap: Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize an ``(h, w)`` map in [0, 1] (tensor or array) to ``size = (height, width)``.

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
    if tuple(tensor.shape) == (height, width):
        return tensor.clamp(0.0, 1.0).numpy()  # a copy: the caller's map stays as it was
    resized = F.interpolate(
        tensor[None, None], size=(height, width), mode="bilinear", align_corners=False
    )[0, 0]
    return resized.clamp_(0.0, 1.0).numpy()  # in place: one full-size buffer, not two


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` (numpy or tensor) as float32 ``.npy``, creating parent folders."""
    if hasattr(array, "detach"):  # a tensor passed by mistake is accepted too
        array = array.detach().cpu().numpy()
    target = Path(path)
    if target.suffix != ".npy":
        target = target.with_name(target.name + ".npy")  # as numpy.save names it
    target.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(array, dtype=np.float32)
    write_atomic(target, lambda handle: np.save(handle, data), durable=False)
