"""The data a run trains on: ``--data`` read by :func:`camscope.data.read.read_data` (class
folders, ``cifar10:DIR``/``cifar100:DIR``, ``builtin:N[:SEED]`` or a list with labels), and its
validation split.

The data's own classes are the model's classes (a name's index is its label). ``builtin:N`` is
read from the generator's **training stream** (one object per image, :mod:`camscope.data.spec`),
rendered at the training size and kept in memory with its boxes, so ``camscope evaluate --data
builtin:M`` (the evaluation stream, same default seed 0) never scores a model on its own training
images. Images are decoded when used, so a corrupt file is found then: the loop skips it with a
warning that names it and counts it.

Validation is another class folder (same classes), CIFAR's test batch (``val="test"``), or a
seeded, stratified split: ``round(fraction * n)`` images of each class, at least one.

Example:
    >>> data = load_training_data("builtin:40", None, 0.25, 0, image_size=32)  # doctest: +SKIP
    >>> data.classes, len(data.train), len(data.val)  # doctest: +SKIP
    (['cat', 'cup', 'motorcycle', 'rocket'], 30, 10)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..data.dataset import ArrayImages, LabelledData, Sample
from ..data.read import read_data
from ..data.spec import parse_data
from ..errors import DatasetError, UsageError


def labels_of(data: LabelledData) -> list[int]:
    """Each sample's class index."""
    return [s.class_ids[0] for s in data.items]


@dataclass
class TrainingData:
    """Both splits and what they hold.

    Attributes:
        kind: the data's kind (``"folders"``, ``"cifar10"``, ``"cifar100"``, ``"builtin"``...).
        classes: class names; a name's index is its label (each sample's ``class_ids[0]``).
        train / val: the splits.
        details: facts for the run's ``config.json`` (source, seed, split).
    """

    kind: str
    classes: list[str]
    train: LabelledData
    val: LabelledData
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts per split and class, for ``config.json``."""

        def counts(split: LabelledData) -> dict[str, int]:
            values = np.bincount(
                np.asarray(labels_of(split), np.int64), minlength=len(self.classes)
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


def load_training_data(
    data: str,
    val: str | None,
    val_split: float,
    seed: int,
    *,
    image_size: int,
    labels: str = "fine",
    download: bool = False,
) -> TrainingData:
    """Read ``data`` (see the module docstring) and its validation split.

    Raises:
        DatasetError: missing folder, empty class folder, fewer than 2 classes, a class missing
            from validation (or only there), unreadable CIFAR files.
        UsageError: a malformed ``DATA`` string or an option that does not apply.
    """
    spec = parse_data(data)
    if spec.kind in ("cifar10", "cifar100"):
        from ..data.cifar import read_cifar

        if val not in (None, "test"):
            raise UsageError(
                f"{spec.kind}: --val must be 'test' (the test batch) or left out (a split)"
            )
        found = read_cifar(spec.kind, str(spec.path), labels=labels, download=download)
        held = None
        if val == "test":
            held = read_cifar(spec.kind, str(spec.path), "test", labels=labels)
            present = {held.classes[i] for i in set(labels_of(held))}
            missing = [c for c in found.classes if c not in present]
            if missing:
                raise DatasetError(
                    f"{spec.kind} test batch has no image of {', '.join(map(repr, missing))}"
                )
        return _split(found, held, val_split, seed)
    if labels != "fine":
        raise UsageError("--labels coarse applies to cifar100:DIR only")
    if spec.kind == "builtin":
        if val not in (None, ""):
            raise UsageError("builtin:N is split with --val-split; --val does not apply")
        found = _in_memory(read_data(data, None, stream="train", size=max(32, image_size)))
        return _split(found, None, val_split, seed)
    if val == "test":
        raise UsageError("--val test means CIFAR's test batch; give a folder for class-folder data")
    found = _checked(read_data(data, None), data)
    held = (
        None if val is None else _same_classes(found, _checked(read_data(val, None), val, 1), val)
    )
    return _split(found, held, val_split, seed)


def _checked(data: LabelledData, where: str, min_classes: int = 2) -> LabelledData:
    """Refuse empty class folders and too few classes."""
    for name, reason in data.skipped:
        if reason == "class folder without images":
            raise DatasetError(
                f"class folder {name!r} of {where!r} holds no images; add images or remove the "
                "folder"
            )
    if len(data.classes) < min_classes:
        raise DatasetError(
            f"data folder {where!r} has {len(data.classes)} class folder(s), at least "
            f"{min_classes} needed (one subfolder per class)"
        )
    return data


def _same_classes(train: LabelledData, held: LabelledData, val: str) -> LabelledData:
    """The validation data labelled with the training data's class indices."""
    only_train = [c for c in train.classes if c not in held.classes]
    only_val = [c for c in held.classes if c not in train.classes]
    if only_train:
        raise DatasetError(
            f"validation folder {val!r} has no class folder for {', '.join(map(repr, only_train))}; "
            "every training class needs validation images"
        )
    if only_val:
        raise DatasetError(
            f"validation folder {val!r} has classes the training data lacks: "
            f"{', '.join(map(repr, only_val))}"
        )
    index = {c: i for i, c in enumerate(train.classes)}
    items = [replace(s, class_ids=(index[str(s.label)],)) for s in held.items]
    return replace(held, items=items, classes=train.classes)


def _in_memory(data: LabelledData) -> LabelledData:
    """Render the built-in set once, as arrays (epochs and loader workers index it)."""
    samples: list[Sample] = list(data.items)
    arrays = ArrayImages(
        np.stack([np.asarray(s.image) for s in samples]),
        [s.id for s in samples],
        [s.class_ids[0] for s in samples],
        data.classes,
        [s.objects[0].box for s in samples],
    )
    return replace(data, items=arrays.samples())


def _split(
    data: LabelledData, held: LabelledData | None, fraction: float, seed: int
) -> TrainingData:
    details = dict(data.details)
    details["source"] = details.get("source") or (
        f"builtin:{len(data)}:{details['generator_seed']}"
        if data.kind == "builtin"
        else data.listing
    )
    details.pop("native_size", None)
    if held is not None:
        details["val_source"] = "test batch" if data.kind.startswith("cifar") else held.listing
        train, val = data, held
    else:
        train_idx, val_idx = stratified_split(labels_of(data), data.classes, fraction, seed)
        details["split"] = {"val_split": fraction, "seed": seed}
        train, val = data.subset(train_idx), data.subset(val_idx)
    return TrainingData(data.kind, data.classes, train, val, details)


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
