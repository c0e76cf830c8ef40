"""Labelled images for the analysis commands: class folders, annotated boxes or the built-in set.

``DATA`` is read as in ``camscope evaluate``, plus class folders:

* ``builtin`` / ``builtin:N``: the built-in ground-truthed images (:mod:`camscope.data.synthetic`);
* a ``.csv``, COCO ``.json`` or VOC ``.xml`` file, or a folder holding one of them directly or in
  ``Annotations/`` / ``annotations/`` (any layout :func:`camscope.data.layouts.find_annotations`
  knows): images with object boxes, read by :mod:`camscope.data.annotations`'s parsers;
* any other folder: one subfolder per class (:func:`camscope.data.folders.scan_class_folders`),
  no boxes.

An image's class is the label of its largest annotated object; its object region is the union of
the boxes of that label (other objects are ignored). Images without objects are skipped and
listed. Object masks, where given, are PNG files ``masks/<image stem>.png`` beside the
annotations (non-zero = object; resized with nearest neighbours when their size differs).

Data-set labels map onto the model's classes with :class:`camscope.data.classes.ClassMapper`
(names, ImageNet synsets, indices, ``a|b``, a ``--class-map`` file). Labels that map to no class:
``unmapped="error"`` lists them all in one :class:`DatasetError`, ``"skip"`` leaves their images
out (counted in :attr:`LabelledData.notes`), ``"keep"`` keeps them with no accepted class (their
predictions are not judged; ``camscope embed`` does this). Nothing is decoded until
:meth:`AuditInput.load`, so a broken or missing file fails alone, when it is reached.

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
from ..data.classes import ClassMapper, read_class_map
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
        notes: one line per thing the user should know about the data (skipped labels, clipped
            boxes, missing files).
    """

    inputs: list[AuditInput]
    classes: list[str]
    kind: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DataOptions:
    """How labelled data is read (``--images``, ``--class-map``, ``--unmapped``,
    ``--allow-outside-paths``, as in ``camscope evaluate``).

    Attributes:
        images: the folder that holds the annotated images (default: the layout's folders).
        class_map: a JSON file ``{"data-set label": ["model class name or index", ...]}``.
        unmapped: ``"error"``, ``"skip"`` or ``"keep"`` (see the module docstring).
        allow_outside: accept image paths in annotations that leave the data folder.
    """

    images: str | None = None
    class_map: str | None = None
    unmapped: str = "error"
    allow_outside: bool = False


UNMAPPED = ("error", "skip", "keep")


def is_builtin(data: str) -> bool:
    """``builtin`` or ``builtin:N`` exactly (a folder called ``builtin_mine`` is a folder)."""
    return _BUILTIN.match(data.strip()) is not None


def read_labelled(
    data: str,
    class_names: Sequence[str],
    options: DataOptions | None = None,
    *,
    seed: int = 0,
    size: int = 224,
    max_pixels: int | None = None,
) -> LabelledData:
    """Find the labelled images of ``data`` (see the module docstring).

    Args:
        data: ``builtin[:N]``, an annotation file or folder, or a class-folder root.
        class_names: the model's class names (empty: ImageNet-1k).
        options: images folder, class map, what to do with unmapped labels, outside paths.
        seed, size: the built-in set's seed and image side.
        max_pixels: refuse larger images (decompression bombs); default PIL's limit.
    """
    options = options or DataOptions()
    if options.unmapped not in UNMAPPED:
        raise UsageError(f"unmapped must be one of {', '.join(UNMAPPED)}; got {options.unmapped!r}")
    spec = data.strip()
    if not spec:
        raise UsageError("--data is empty; pass a folder, an annotation file or builtin:N")
    mapper = ClassMapper(list(class_names) or None)
    if options.class_map:
        mapper = ClassMapper(list(class_names) or None, read_class_map(options.class_map, mapper))
    match = _BUILTIN.match(spec)
    if match:
        count = int(match.group(1) or 50)
        return _builtin(count, mapper, class_names, options.unmapped, seed, size)
    if spec.startswith("builtin:"):
        raise UsageError(f"--data {data!r}: expected builtin:N with N a whole number")
    root = Path(spec).expanduser()
    if not root.exists():
        raise DatasetError(
            f"--data {spec!r}: no such file or folder (a class-folder root, an annotation "
            "file or folder, or builtin:N)"
        )
    if _holds_annotations(root):
        return _annotated(root, mapper, options, max_pixels)
    return _folders(root, mapper, options.unmapped, max_pixels)


def _holds_annotations(root: Path) -> bool:
    if root.is_file():
        return True
    return any(
        (p.is_file() and p.suffix.lower() in _ANNOTATIONS)
        or (p.is_dir() and p.name.lower() == "annotations")
        for p in root.iterdir()
    )


def _load(path: Path, max_pixels: int | None) -> Image.Image:
    from .. import io

    if max_pixels is None:
        return io.load_image(path)
    return io.load_image(path, max_pixels=max_pixels)


def _unknown_labels(labels: list[str], where: str) -> DatasetError:
    return DatasetError(
        f"{len(labels)} class(es) in {where} are not classes of the model: "
        f"{', '.join(map(repr, labels))}. Name them after the model's classes (names, ImageNet "
        "synset ids such as n02123045, indices), map them with --class-map FILE, or leave them "
        "out with --unmapped skip"
    )


def _folders(
    root: Path, mapper: ClassMapper, unmapped: str, max_pixels: int | None
) -> LabelledData:
    from ..data.folders import scan_class_folders

    found = scan_class_folders(root, empty="skip")
    ids = {name: mapper.lookup(name) or () for name in found.classes}
    unknown = [name for name, mapped in ids.items() if not mapped]
    if unknown and unmapped == "error":
        raise _unknown_labels(unknown, f"the class folders of {str(root)!r}")
    inputs = []
    skipped = [(name, "class folder without images") for name in found.empty]
    for path, index in found.items:
        label = found.classes[index]
        if unmapped == "skip" and not ids[label]:
            continue

        def load(path: Path = path, label: str = label) -> LoadedInput:
            return LoadedInput(_load(path, max_pixels), label, ids[label])

        inputs.append(AuditInput(str(path.relative_to(root)), load, path))
    notes = []
    if unknown and unmapped == "skip":
        notes.append(f"skipped the class folder(s) {', '.join(map(repr, unknown))}: no model class")
    classes = [c for c in found.classes if unmapped != "skip" or ids[c]]
    return LabelledData(inputs, classes, "folders", skipped, notes)


def _largest_label(sample: Sample) -> str:
    def area(box: Box) -> float:
        return (box[2] - box[0]) * (box[3] - box[1])

    return max(sample.objects, key=lambda o: area(o.box)).label


def _parse(root: Path, options: DataOptions) -> tuple[list[Sample], str]:
    """Samples with unmapped labels, in the layout :func:`find_annotations` finds."""
    from ..data.annotations import parse_coco, parse_csv, parse_voc
    from ..data.layouts import find_annotations

    layout = find_annotations(root, options.images)
    samples: list[Sample] = []
    for file in layout.files:
        if layout.kind == "csv":
            samples += parse_csv(file, layout.image_dirs, options.allow_outside)
        elif layout.kind == "coco":
            samples += parse_coco(file, layout.image_dirs, options.allow_outside)
        else:
            samples += parse_voc([file], layout.image_dirs, options.allow_outside)
    return samples, layout.description


def _annotated(
    root: Path, mapper: ClassMapper, options: DataOptions, max_pixels: int | None
) -> LabelledData:
    from dataclasses import replace

    from ..data.annotations import map_labels

    samples, description = _parse(root, options)
    notes = [f"data: {description}"]
    if options.unmapped == "keep":
        samples = [
            replace(
                s, objects=[replace(o, class_ids=mapper.lookup(o.label) or ()) for o in s.objects]
            )
            for s in samples
        ]
    else:
        samples, dropped = map_labels(samples, mapper, options.unmapped)
        if dropped:
            parts = ", ".join(f"{k!r}: {v}" for k, v in sorted(dropped.items()))
            notes.append(f"skipped object(s) whose class maps to no model class ({parts})")
    clipped = sum(int(s.extra.get("clipped", 0)) for s in samples)  # type: ignore[call-overload]
    if clipped:
        notes.append(f"clipped {clipped} box(es) that reached outside their image")
    found = [s for s in samples if s.objects and s.path is not None and s.path.is_file()]
    if samples and not found:
        raise DatasetError(
            f"{description}: none of the {len(samples)} annotated images exists (e.g. "
            f"{samples[0].path}); pass the image folder with --images DIR"
        )
    mask_dir = (root if root.is_dir() else root.parent) / "masks"
    classes: list[str] = []
    inputs: list[AuditInput] = []
    skipped: list[tuple[str, str]] = []
    for sample in samples:
        if not sample.objects:
            skipped.append((sample.id, "no annotated object of a model class"))
            continue
        label = _largest_label(sample)
        if label not in classes:
            classes.append(label)
        mine = [o for o in sample.objects if o.label == label]
        boxes = tuple(o.box for o in mine)
        path = sample.path
        assert path is not None  # annotation readers give files
        mask_path = mask_dir / f"{path.stem}.png"

        def load(
            path: Path = path,
            label: str = label,
            ids: tuple[int, ...] = mine[0].class_ids,
            boxes: tuple[Box, ...] = boxes,
            mask_path: Path = mask_path,
        ) -> LoadedInput:
            image = _load(path, max_pixels)
            mask = _read_mask(mask_path, image.size) if mask_path.is_file() else None
            return LoadedInput(image, label, ids, boxes, mask)

        inputs.append(AuditInput(sample.id, load, path))
    return LabelledData(inputs, classes, "annotations", skipped, notes)


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
    unmapped: str,
    seed: int,
    size: int,
) -> LabelledData:
    from ..data.synthetic import SyntheticBenchmark

    bench = SyntheticBenchmark(count, size=size, seed=seed)
    # ImageNet models accept every close class of an object; other models (trained on the
    # built-in set) name their classes after the objects.
    if len(class_names) in (0, 1000):
        ids = {spec.name: spec.class_ids for spec in bench.specs}
    else:
        ids = {spec.name: mapper.lookup(spec.name) or () for spec in bench.specs}
        unknown = [name for name, found in ids.items() if not found]
        if unknown and unmapped != "keep":
            raise _unknown_labels(unknown, "the built-in set")

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
