"""Training data: class folders, CIFAR-10/100 and the built-in set, split into training and validation.

``DATA`` is one of

* a folder with one subfolder per class (torchvision's ``ImageFolder`` layout, scanned by
  :func:`camscope.data.folders.scan_class_folders`); images are decoded when used, so a corrupt
  file is found then: it is skipped with a warning that names it and counted in the summary;
* ``cifar10:DIR`` / ``cifar100:DIR``: the python-version folders (:mod:`.cifar`);
* ``builtin:N`` or ``builtin:N:SEED``: N images of the built-in benchmark
  (:class:`camscope.data.synthetic.SyntheticBenchmark`) with one object each, labelled by object
  kind, rendered at the training size and kept in memory with their boxes. The default generator
  seed is 1, so that ``camscope evaluate --data builtin:M`` (seed 0) scores other images.

Validation is another class folder (same classes), CIFAR's test batch (``val="test"``), or a
seeded, stratified split: ``round(fraction * n)`` images of each class, at least one.

Example:
    >>> data = load_training_data("builtin:40", None, 0.25, 0, image_size=32)  # doctest: +SKIP
    >>> data.classes, len(data.train), len(data.val)  # doctest: +SKIP
    (['cat', 'cup', 'motorcycle', 'rocket'], 30, 10)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..data.folders import scan_class_folders
from ..errors import DatasetError, UsageError
from .cifar import load_cifar
from .splits import ArrayImages, FileImages, TrainingData, stratified_split

log = logging.getLogger(__name__)

BUILTIN_SEED = 1  # camscope evaluate's built-in benchmark uses seed 0: no image in common


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
    kind, _, rest = data.partition(":")
    if kind in ("cifar10", "cifar100") and rest:
        return load_cifar(kind, rest, val, val_split, seed, labels=labels, download=download)
    if labels != "fine":
        raise UsageError("--labels coarse applies to cifar100:DIR only")
    if kind == "builtin" and (rest or data == "builtin"):
        if val not in (None, ""):
            raise UsageError("builtin:N is split with --val-split; --val does not apply")
        return _load_builtin(rest, val_split, seed, image_size)
    return _load_folders(data, val, val_split, seed)


def _load_folders(data: str, val: str | None, val_split: float, seed: int) -> TrainingData:
    if val == "test":
        raise UsageError("--val test means CIFAR's test batch; give a folder for class-folder data")
    scanned = scan_class_folders(data, min_classes=2)
    paths = [p for p, _ in scanned.items]
    labels = [label for _, label in scanned.items]
    source = FileImages(paths, labels)
    details: dict[str, Any] = {"source": str(Path(data))}
    if val is None:
        train_idx, val_idx = stratified_split(labels, scanned.classes, val_split, seed)
        details["split"] = {"val_split": val_split, "seed": seed}
        return TrainingData(
            "folders",
            scanned.classes,
            source.subset(train_idx),
            source.subset(val_idx),
            None,
            details,
        )
    held = scan_class_folders(val, min_classes=1)
    only_train = [c for c in scanned.classes if c not in held.classes]
    only_val = [c for c in held.classes if c not in scanned.classes]
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
    index = {c: i for i, c in enumerate(scanned.classes)}
    val_source = FileImages(
        [p for p, _ in held.items], [index[held.classes[label]] for _, label in held.items]
    )
    details["val_source"] = str(Path(val))
    return TrainingData("folders", scanned.classes, source, val_source, None, details)


def _load_builtin(rest: str, val_split: float, seed: int, image_size: int) -> TrainingData:
    from ..data.synthetic import OBJECTS, SyntheticBenchmark, tight_box

    parts = rest.split(":") if rest else ["200"]
    try:
        count = int(parts[0])
        data_seed = int(parts[1]) if len(parts) > 1 else BUILTIN_SEED
    except ValueError:
        raise UsageError(
            f"builtin:{rest}: expected builtin:N or builtin:N:SEED (whole numbers)"
        ) from None
    if len(parts) > 2 or count < 2:
        raise UsageError(f"builtin:{rest}: expected builtin:N[:SEED] with N >= 2")
    bench = SyntheticBenchmark(
        count, size=max(32, image_size), seed=data_seed, two_object_fraction=0.0
    )
    classes = sorted(o.name for o in OBJECTS)
    images = np.empty((count, bench.size, bench.size, 3), dtype=np.uint8)
    labels: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    for i in range(count):
        rendered = bench.render(i)
        images[i] = rendered.image
        labels.append(classes.index(rendered.names[0]))
        boxes.append(tight_box(rendered.masks[0]))
    names = [f"builtin-{data_seed}-{i:06d}" for i in range(count)]
    source = ArrayImages(images, labels, names, boxes)
    train_idx, val_idx = stratified_split(labels, classes, val_split, seed)
    details = {
        "source": f"builtin:{count}:{data_seed}",
        "generator_seed": data_seed,
        "rendered_size": bench.size,
        "split": {"val_split": val_split, "seed": seed},
    }
    return TrainingData(
        "builtin", classes, source.subset(train_idx), source.subset(val_idx), bench.size, details
    )
