"""The data a run trains on: labelled image sources (files or in-memory arrays), both splits, and
the seeded stratified split.

A source decodes on access, so a corrupt file is found when an epoch reaches it (the training loop
skips it with a warning that names it and counts it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..io import load_image


class ImageSource:
    """Labelled images, decoded on access. Subclasses hold files or in-memory arrays."""

    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> Image.Image | np.ndarray:
        """The image (``PIL.Image`` or an ``(H, W, 3)`` uint8 array); raises ImageLoadError."""
        raise NotImplementedError

    def name(self, index: int) -> str:
        """A readable name of image ``index`` (its path, or ``builtin-1-000042``)."""
        raise NotImplementedError

    def subset(self, indices: Sequence[int]) -> ImageSource:
        raise NotImplementedError


@dataclass
class FileImages(ImageSource):
    """Image files and their labels; :func:`camscope.io.load_image` decodes them."""

    paths: list[Path]
    labels: list[int]

    def load(self, index: int) -> Image.Image:
        return load_image(str(self.paths[index]))

    def name(self, index: int) -> str:
        return str(self.paths[index])

    def subset(self, indices: Sequence[int]) -> FileImages:
        return FileImages([self.paths[i] for i in indices], [self.labels[i] for i in indices])


@dataclass
class ArrayImages(ImageSource):
    """In-memory ``(N, H, W, 3)`` uint8 images (CIFAR, the built-in set), boxes where known."""

    images: np.ndarray
    labels: list[int]
    names: list[str]
    boxes: list[tuple[float, float, float, float]] | None = None

    def load(self, index: int) -> np.ndarray:
        return self.images[index]

    def name(self, index: int) -> str:
        return self.names[index]

    def subset(self, indices: Sequence[int]) -> ArrayImages:
        idx = list(indices)
        return ArrayImages(
            self.images[idx],
            [self.labels[i] for i in idx],
            [self.names[i] for i in idx],
            None if self.boxes is None else [self.boxes[i] for i in idx],
        )


@dataclass
class TrainingData:
    """Both splits and what they hold.

    Attributes:
        kind: ``"folders"``, ``"cifar10"``, ``"cifar100"`` or ``"builtin"``.
        classes: class names; a name's index is its label.
        train / val: the splits.
        native_size: the images' side when they all share one (CIFAR 32, builtin its render size).
        details: facts for the run's ``config.json`` (source, seed, split).
    """

    kind: str
    classes: list[str]
    train: ImageSource
    val: ImageSource
    native_size: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts per split and class, for ``config.json``."""

        def counts(source: ImageSource) -> dict[str, int]:
            values = np.bincount(
                np.asarray(source.labels, dtype=np.int64), minlength=len(self.classes)
            )
            return {c: int(v) for c, v in zip(self.classes, values)}

        return {
            "kind": self.kind,
            **self.details,
            "classes": len(self.classes),
            "train_images": len(self.train),
            "val_images": len(self.val),
            "train_per_class": counts(self.train),
            "val_per_class": counts(self.val),
        }


def stratified_split(
    labels: Sequence[int], classes: Sequence[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Seeded, stratified split: ``(train indices, val indices)``, both sorted.

    Each class gives ``max(1, round(fraction * n))`` of its ``n`` images to validation and keeps
    at least one for training.

    Raises:
        DatasetError: a class with fewer than 2 images (it cannot be in both splits).
    """
    rng = np.random.default_rng(seed)
    array = np.asarray(labels, dtype=np.int64)
    train: list[int] = []
    val: list[int] = []
    for label, name in enumerate(classes):
        members = np.flatnonzero(array == label)
        if members.size < 2:
            raise DatasetError(
                f"class {name!r} has {members.size} image(s); a validation split needs at least 2 "
                "per class (add images, or give a validation folder with --val)"
            )
        take = min(members.size - 1, max(1, round(fraction * members.size)))
        chosen = rng.permutation(members)
        val.extend(int(i) for i in chosen[:take])
        train.extend(int(i) for i in chosen[take:])
    return sorted(train), sorted(val)
