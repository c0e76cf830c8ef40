"""From a labelled image to a batch: the training augmentation, the evaluation resize, and a
collate function that lets corrupt files through as named skips.

Every image leaves the dataset as a ``(3, S, S)`` uint8 tensor; the loop normalises the whole batch
on the device (``(x / 255 - mean) / std`` in float32, the same arithmetic as
:func:`camscope.io.preprocess`, so a run folder predicts what validation measured).

* evaluation: the whole image resized to ``S x S`` with the run's interpolation (PIL, as
  :func:`camscope.io.preprocess` does: no centre crop);
* ``crop``: random-resized crop (scale 0.25-1, aspect 3/4-4/3, Szegedy et al. 2015) and a
  horizontal flip (torchvision's transforms v2);
* ``pad-crop``: the evaluation resize, a reflection padding of ``S / 8`` pixels, a random ``S x S``
  crop and a horizontal flip (the usual CIFAR recipe, He et al. 2016).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data.dataset import Sample
from ..data.walk import Loading, Outcome
from ..io.preprocess import RESAMPLE


def resize_whole(image: Image.Image | np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """The whole image as an ``(S, S, 3)`` uint8 array, resized like :func:`camscope.io.preprocess`."""
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (size, size):
            return image
        image = Image.fromarray(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize(
            (size, size), resample=RESAMPLE.get(interpolation, Image.Resampling.BILINEAR)
        )
    return np.array(image, dtype=np.uint8)  # a writable copy: torch.from_numpy needs one


class ImageTransform:
    """``image -> (3, S, S)`` uint8 tensor for one of the modes ``eval``, ``crop``, ``pad-crop``.

    Random draws come from torch's generator (reseeded every epoch by the training loop, and per
    DataLoader worker by torch), so an epoch's augmentation is reproducible.
    """

    def __init__(self, size: int, interpolation: str, mode: str) -> None:
        from torchvision.transforms import InterpolationMode, v2

        if mode not in ("eval", "crop", "pad-crop"):
            raise ValueError(f"unknown transform mode {mode!r}")
        self.size = size
        self.interpolation = interpolation
        self.mode = mode
        self.pad = pad = max(1, size // 8)
        # the input row (or column) each row of the reflection-padded picture shows
        self.reflect = np.concatenate(
            [np.arange(pad, 0, -1), np.arange(size), np.arange(size - 2, size - 2 - pad, -1)]
        )
        if mode == "crop":  # on the PIL image: cropping before resizing keeps it cheap
            self.augment = v2.Compose(
                [
                    v2.RandomResizedCrop(
                        size,
                        scale=(0.25, 1.0),
                        interpolation=InterpolationMode(interpolation),
                        antialias=True,
                    ),
                    v2.RandomHorizontalFlip(),
                ]
            )

    def __call__(self, image: Image.Image | np.ndarray) -> Tensor:
        if self.mode == "crop":
            picture = Image.fromarray(image) if isinstance(image, np.ndarray) else image
            array = np.array(self.augment(picture.convert("RGB")), dtype=np.uint8)
        else:
            array = resize_whole(image, self.size, self.interpolation)
            if self.mode == "pad-crop":
                array = self._pad_crop_flip(array)
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()

    def _pad_crop_flip(self, array: np.ndarray) -> np.ndarray:
        # Reflection padding done by index: the padded picture's row r is the input's row
        # reflect[r]. np.pad took 0.2 ms and torchvision's padding of a uint8 tensor 0.6-10 ms
        # per 32-px image, a quarter of a small model's epoch.
        pad, size, reflect = self.pad, self.size, self.reflect
        top, left = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))
        rows = reflect[top : top + size]
        cols = reflect[left : left + size]
        if int(torch.randint(0, 2, (1,))):
            cols = cols[::-1]
        return array[rows[:, None], cols[None, :]]


class LabelledImages(Loading, torch.utils.data.Dataset):
    """A :class:`torch.utils.data.Dataset` over samples whose ``class_ids[0]`` is their label: the
    batch walker's :class:`~camscope.data.walk.Loading` with the transform as its ``load``.

    An image that cannot be read comes out as an outcome with its reason; :func:`collate` drops
    it from the batch and passes ``(source, reason)`` on, so the loop can warn and count.
    """

    def __init__(self, samples: Sequence[Sample], transform: ImageTransform) -> None:
        super().__init__(samples, partial(_transformed, transform))


def _transformed(transform: ImageTransform, sample: Sample) -> Tensor:
    return transform(sample.image if sample.image is not None else sample.decode())


def collate(items: Sequence[Outcome[Tensor]]) -> tuple[Tensor, Tensor, list[tuple[str, str]]]:
    """``(uint8 images (B, 3, S, S), labels (B,), [(skipped source, reason), ...])``."""
    good = [(o.value, o.sample.class_ids[0]) for o in items if o.value is not None]
    skipped = [(o.sample.source, o.error or "") for o in items if o.value is None]
    if not good:
        return torch.empty(0, 3, 1, 1, dtype=torch.uint8), torch.empty(0, dtype=torch.long), skipped
    images = torch.stack([x for x, _ in good])
    labels = torch.tensor([y for _, y in good], dtype=torch.long)
    return images, labels, skipped


class Normalize:
    """Batch normalisation of uint8 images on the device: ``(x / 255 - mean) / std`` in float32."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device) -> None:
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, images: Tensor) -> Tensor:
        return (images.float() / 255.0 - self.mean) / self.std
