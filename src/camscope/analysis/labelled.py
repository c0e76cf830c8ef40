"""Labelled images for the analysis commands: class folders, annotated boxes or the built-in set.

``DATA`` is read as in ``camscope evaluate``, plus class folders:

* ``builtin`` / ``builtin:N``: the built-in ground-truthed images (:mod:`camscope.data.synthetic`);
* a ``.csv``, COCO ``.json`` or VOC ``.xml`` file, or a folder holding one of them (or VOC's
  ``Annotations/``): images with object boxes (:func:`camscope.data.annotations.load_dataset`);
* any other folder: one subfolder per class (:func:`camscope.data.folders.scan_class_folders`),
  no boxes.

An image's class is the label of its largest annotated object; its object region is the union of
the boxes of that label (other objects are ignored). Images without objects are skipped and
listed. Object masks, where given, are PNG files ``masks/<image stem>.png`` beside the
annotations (non-zero = object; resized with nearest neighbours when their size differs).

Data-set labels map onto the model's classes with :class:`camscope.data.classes.ClassMapper`
(names, ImageNet synsets, indices, ``a|b``). Nothing is decoded until :meth:`AuditInput.load`, so
a broken file fails alone, when it is reached.

Example:
    >>> data = read_labelled("builtin:20", ["cat", "cup", "motorcycle", "rocket"])  # doctest: +SKIP
    >>> data.classes, data.inputs[0].load().label  # doctest: +SKIP
    (['cat', 'cup', 'rocket', 'motorcycle'], 'cup')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.annotations import Box, Sample
from ..data.classes import ClassMapper
from ..errors import DatasetError, ImageLoadError, UsageError

_BUILTIN = re.compile(r"^builtin(?::(\d+))?$")
_ANNOTATIONS = (".csv", ".json", ".xml")


@dataclass
class LoadedInput:
    """One decoded image with what is known about it.

    Attributes:
        image: RGB picture.
        label: data-set class name.
        class_ids: model classes that count as correct (empty when the label maps to none).
        boxes: object boxes of that label in the image's pixels.
        mask: ``(H, W)`` boolean object mask at the image's size, or None.
    """

    image: Image.Image
    label: str
    class_ids: tuple[int, ...]
    boxes: tuple[Box, ...] = ()
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class AuditInput:
    """An image not yet decoded: ``load()`` decodes it (or raises :class:`ImageLoadError`)."""

    id: str
    load: Callable[[], LoadedInput]
    path: Path | None = None


@dataclass
class LabelledData:
    """What :func:`read_labelled` found.

    Attributes:
        inputs: the images, in data-set order.
        classes: data-set class names, in data-set order.
        kind: ``"builtin"``, ``"annotations"`` or ``"folders"``.
        skipped: ``(image id, reason)`` of images left out before any decoding.
    """

    inputs: list[AuditInput]
    classes: list[str]
    kind: str
    skipped: list[tuple[str, str]] = field(default_factory=list)


class _LenientMapper(ClassMapper):
    """A label that is no model class maps to no class instead of failing."""

    def map(self, label: str) -> tuple[int, ...]:
        try:
            return super().map(label)
        except DatasetError:
            return ()


def is_builtin(data: str) -> bool:
    """``builtin`` or ``builtin:N`` exactly (a folder called ``builtin_mine`` is a folder)."""
    return _BUILTIN.match(data.strip()) is not None


def read_labelled(
    data: str,
    class_names: Sequence[str],
    *,
    require_mapping: bool = True,
    seed: int = 0,
    size: int = 224,
    max_pixels: int | None = None,
) -> LabelledData:
    """Find the labelled images of ``data`` (see the module docstring).

    Args:
        data: ``builtin[:N]``, an annotation file or folder, or a class-folder root.
        class_names: the model's class names (empty: ImageNet-1k).
        require_mapping: a label that is no model class is a :class:`DatasetError` naming it;
            with False it is kept with no accepted class (predictions are not judged).
        seed, size: the built-in set's seed and image side.
        max_pixels: refuse larger images (decompression bombs); default PIL's limit.
    """
    spec = data.strip()
    if not spec:
        raise UsageError("--data is empty; pass a folder, an annotation file or builtin:N")
    match = _BUILTIN.match(spec)
    mapper = (ClassMapper if require_mapping else _LenientMapper)(list(class_names) or None)
    if match:
        return _builtin(int(match.group(1) or 50), mapper, class_names, require_mapping, seed, size)
    root = Path(spec).expanduser()
    if not root.exists():
        raise DatasetError(
            f"--data {spec!r}: no such file or folder (a class-folder root, an annotation "
            "file or folder, or builtin:N)"
        )
    if _holds_annotations(root):
        return _annotated(root, mapper, max_pixels)
    return _folders(root, mapper, require_mapping, max_pixels)


def _holds_annotations(root: Path) -> bool:
    if root.is_file():
        return True
    return (
        any(p.suffix.lower() in _ANNOTATIONS for p in root.iterdir() if p.is_file())
        or (root / "Annotations").is_dir()
    )


def _load(path: Path, max_pixels: int | None) -> Image.Image:
    from .. import io

    if max_pixels is None:
        return io.load_image(path)
    return io.load_image(path, max_pixels=max_pixels)


def _map(mapper: ClassMapper, label: str, require: bool, where: str) -> tuple[int, ...]:
    try:
        return mapper.map(label)
    except DatasetError as err:
        if require:
            raise DatasetError(f"{where}: {err}") from None
        return ()


def _folders(
    root: Path, mapper: ClassMapper, require: bool, max_pixels: int | None
) -> LabelledData:
    from ..data.folders import scan_class_folders

    found = scan_class_folders(root, empty="skip")
    ids = {name: _map(mapper, name, False, "") for name in found.classes}
    unknown = [name for name, mapped in ids.items() if not mapped]
    if unknown and require:
        raise DatasetError(
            f"class folder(s) {', '.join(map(repr, unknown))} in {str(root)!r} are no classes "
            f"of the model ({mapper.num_classes} classes); name the folders after the model's "
            "classes (names, ImageNet synset ids such as n02123045, or indices)"
        )
    inputs = []
    for path, index in found.items:
        label = found.classes[index]

        def load(path: Path = path, label: str = label) -> LoadedInput:
            return LoadedInput(_load(path, max_pixels), label, ids[label])

        inputs.append(AuditInput(str(path.relative_to(root)), load, path))
    skipped = [(name, "class folder without images") for name in found.empty]
    return LabelledData(inputs, list(found.classes), "folders", skipped)


def _largest_label(sample: Sample) -> str:
    def area(box: Box) -> float:
        return (box[2] - box[0]) * (box[3] - box[1])

    return max(sample.objects, key=lambda o: area(o.box)).label


def _annotated(root: Path, mapper: ClassMapper, max_pixels: int | None) -> LabelledData:
    from ..data.annotations import load_dataset

    samples = load_dataset(root, mapper)
    mask_dir = (root if root.is_dir() else root.parent) / "masks"
    classes: list[str] = []
    inputs: list[AuditInput] = []
    skipped: list[tuple[str, str]] = []
    for sample in samples:
        if not sample.objects:
            skipped.append((sample.id, "no annotated object"))
            continue
        label = _largest_label(sample)
        if label not in classes:
            classes.append(label)
        mine = [o for o in sample.objects if o.label == label]
        boxes = tuple(o.box for o in mine)
        class_ids = mine[0].class_ids
        path = sample.path
        assert path is not None  # load_dataset gives files
        mask_path = mask_dir / f"{path.stem}.png"

        def load(
            path: Path = path,
            label: str = label,
            ids: tuple[int, ...] = class_ids,
            boxes: tuple[Box, ...] = boxes,
            mask_path: Path = mask_path,
        ) -> LoadedInput:
            image = _load(path, max_pixels)
            mask = _read_mask(mask_path, image.size) if mask_path.is_file() else None
            return LoadedInput(image, label, ids, boxes, mask)

        inputs.append(AuditInput(sample.id, load, path))
    return LabelledData(inputs, classes, "annotations", skipped)


def _read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as raw:
            mask = raw.convert("L")
            if mask.size != size:
                mask = mask.resize(size, Image.Resampling.NEAREST)
            return np.asarray(mask) > 0
    except OSError as err:
        raise ImageLoadError(str(path), f"object mask cannot be read ({err})") from None


def _builtin(
    count: int,
    mapper: ClassMapper,
    class_names: Sequence[str],
    require: bool,
    seed: int,
    size: int,
) -> LabelledData:
    from ..data.synthetic import SyntheticBenchmark

    bench = SyntheticBenchmark(count, size=size, seed=seed)
    imagenet = len(class_names) in (0, 1000)
    # ImageNet models accept every close class of an object; other models (trained on the
    # built-in set) name their classes after the objects.
    ids = {
        spec.name: spec.class_ids
        if imagenet
        else _map(mapper, spec.name, require, f"built-in object {spec.name!r}")
        for spec in bench.specs
    }

    def make(index: int) -> Callable[[], LoadedInput]:
        def load() -> LoadedInput:
            sample = bench[index]
            label = _largest_label(sample)
            boxes = tuple(o.box for o in sample.objects if o.label == label)
            assert isinstance(sample.image, Image.Image)
            return LoadedInput(sample.image, label, ids[label], boxes)

        return load

    inputs = [AuditInput(f"builtin-{seed}-{i:06d}", make(i)) for i in range(count)]
    return LabelledData(inputs, [spec.name for spec in bench.specs], "builtin")
