"""Localization data sets: images with ground-truth boxes, and their labels mapped to model classes.

Three annotation formats are read, all into :class:`~camscope.data.dataset.Sample` records:

* **PASCAL VOC XML**, one file per image (also the format of ImageNet's validation boxes, whose
  ``<name>`` is a WordNet synset id such as ``n02123045``, and of the Oxford-IIIT Pet head boxes).
  VOC coordinates are 1-based and inclusive; they are converted to pixel-edge boxes
  (``x0 = xmin - 1``, ``x1 = xmax``).
* **COCO JSON** (``images``, ``annotations`` with ``bbox = [x, y, width, height]``, ``categories``).
* **CSV** with columns ``file, class, x0, y0, x1, y1`` (a header row is optional), boxes already in
  pixel-edge coordinates (``x1 - x0`` is the width). Several rows per file give several objects.

Boxes everywhere are ``(x0, y0, x1, y1)`` floats in the image's own pixels, pixel column ``j``
covering ``[j, j + 1)`` (see :mod:`camscope.metrics.localization`).

Checks (each failure is a :class:`DatasetError` naming the file, the entry and the field): every
field the reader needs is present and of the right type; coordinates and sizes are finite
numbers; a box is not empty or inverted; a box reaching outside an image of known size is clipped
to it (counted in the data's ``details["clipped"]``), one wholly outside is refused; image names that leave
the data folder are refused unless ``allow_outside=True`` (:func:`camscope.data.layouts.safe_relative`).

Labels go to model classes with :class:`camscope.data.classes.ClassMapper`; labels that map to no
class are listed all at once (``unmapped="error"``) or their objects are skipped and counted
(``unmapped="skip"``).

Example:
    >>> data = read_dataset("VOC2007", ClassMapper(), unmapped="skip")  # doctest: +SKIP
    >>> data.items[0].objects[0].class_ids, data.details["unmapped"]  # doctest: +SKIP
    ((281, 282, 283, 284, 285), {'person': 12})
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .checks import Box, box_in_image, key_field, load_json, number, records, size_of, text_field
from .classes import ClassMapper
from .dataset import GroundTruth, LabelledData, Sample
from .layouts import find_annotations, find_image, safe_relative
from .spec import UNMAPPED


def _image_path(name: str, dirs: list[Path], where: str, allow_outside: bool) -> Path:
    name = safe_relative(name, where, allow_outside)
    return find_image(dirs, name) or dirs[0] / name


def _sample(
    id_: str,
    path: Path,
    items: list[tuple[str, Box, str]],
    size: tuple[int, int] | None,
    annotation: str,
) -> Sample:
    """A sample with unmapped objects; boxes reaching outside a known size are clipped."""
    objects, clipped = [], 0
    for label, raw, where in items:
        box, was_clipped = box_in_image(raw, where, size)
        clipped += was_clipped
        objects.append(GroundTruth(label, (), box))
    extra = {"annotation": annotation, "clipped": clipped}
    return Sample(id_, str(path), objects=tuple(objects), size=size, extra=extra)


# ---------------------------------------------------------------------------------------------
# Readers (labels unmapped; map_labels maps them)


def parse_voc(files: list[Path], dirs: list[Path], allow_outside: bool = False) -> list[Sample]:
    """VOC XML files into samples with unmapped labels (``class_ids == ()``)."""
    samples = []
    for xml_path in files:
        try:
            tree = ET.parse(xml_path).getroot()
        except ET.ParseError as err:
            raise DatasetError(f"{xml_path}: not valid XML ({err})") from None
        except OSError as err:
            raise DatasetError(f"{xml_path}: cannot read ({err.strerror or err})") from None
        filename = (tree.findtext("filename") or "").strip() or xml_path.stem + ".jpg"
        where = str(xml_path)
        size = size_of(tree.findtext("size/width"), tree.findtext("size/height"), f"{where} <size>")
        items = []
        for k, obj in enumerate(tree.iter("object")):
            name = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            if not name or bb is None:
                raise DatasetError(f"{where}: <object> {k + 1} lacks <name> or <bndbox>")
            here = f"{where} <object> {k + 1} ({name!r})"
            xmin, ymin, xmax, ymax = (
                number(bb.findtext(t), here, f"<{t}>") for t in ("xmin", "ymin", "xmax", "ymax")
            )
            items.append((name, (xmin - 1, ymin - 1, xmax, ymax), here))
        image = _image_path(filename, dirs, f"{where} <filename>", allow_outside)
        samples.append(_sample(image.name, image, items, size, where))
    return samples


def parse_coco(json_path: Path, dirs: list[Path], allow_outside: bool = False) -> list[Sample]:
    """A COCO JSON file into samples with unmapped labels; crowd annotations are skipped."""
    data = load_json(json_path)
    if not isinstance(data, dict):
        raise DatasetError(
            f"{json_path}: expected a JSON object with 'images', 'annotations' and 'categories'; "
            f"got {type(data).__name__}"
        )
    categories = records(data, "categories", json_path)
    images = records(data, "images", json_path)
    annotations = records(data, "annotations", json_path)
    cats: dict[int | str, str] = {}
    for k, cat in enumerate(categories):
        where = f"{json_path} categories[{k}]"
        cats[key_field(cat, "id", where)] = text_field(cat, "name", where)
    entries: dict[int | str, tuple[str, tuple[int, int] | None, str]] = {}
    for k, img in enumerate(images):
        where = f"{json_path} images[{k}]"
        image_id = key_field(img, "id", where)
        if image_id in entries:
            raise DatasetError(f"{where}: id {image_id!r} appears twice in 'images'")
        size = size_of(img.get("width"), img.get("height"), where)
        entries[image_id] = (text_field(img, "file_name", where), size, where)
    items: dict[int | str, list[tuple[str, Box, str]]] = {i: [] for i in entries}
    for k, ann in enumerate(annotations):
        if ann.get("iscrowd"):
            continue
        where = f"{json_path} annotations[{k}]"
        image_id, cat_id = key_field(ann, "image_id", where), key_field(ann, "category_id", where)
        if image_id not in entries:
            raise DatasetError(f"{where}: image_id {image_id!r} is not in 'images'")
        if cat_id not in cats:
            raise DatasetError(f"{where}: category_id {cat_id!r} is not in 'categories'")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise DatasetError(f"{where}: 'bbox' must be [x, y, width, height]; got {bbox!r:.60}")
        x, y, w, h = (number(v, where, "a 'bbox' value") for v in bbox)
        items[image_id].append((cats[cat_id], (x, y, x + w, y + h), where))
    samples = []
    for image_id, (name, size, where) in entries.items():
        path = _image_path(name, dirs, f"{where} 'file_name'", allow_outside)
        samples.append(_sample(name, path, items[image_id], size, str(json_path)))
    return samples


def parse_csv(csv_path: Path, dirs: list[Path], allow_outside: bool = False) -> list[Sample]:
    """``file, class, x0, y0, x1, y1`` rows (header optional) into samples with unmapped labels."""
    try:
        rows = list(csv.reader(csv_path.read_text(encoding="utf-8").splitlines()))
    except OSError as err:
        raise DatasetError(f"{csv_path}: cannot read ({err.strerror or err})") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{csv_path}: not a readable CSV file ({err})") from None
    order: list[str] = []
    objects: dict[str, list[tuple[str, Box, str]]] = {}
    for n, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 6:
            raise DatasetError(
                f"{csv_path} line {n}: expected 6 columns (file, class, x0, y0, x1, y1); got {len(row)}"
            )
        if n == 1 and row[2].strip().lower() in ("x0", "xmin", "x"):
            continue  # header
        file, label = row[0].strip(), row[1].strip()
        where = f"{csv_path} line {n}"
        if not file or not label:
            raise DatasetError(f"{where}: the file and class columns must not be empty")
        x0, y0, x1, y1 = (
            number(v, where, col) for v, col in zip(row[2:], ("x0", "y0", "x1", "y1"))
        )
        if file not in objects:
            order.append(file)
            objects[file] = []
        objects[file].append((label, (x0, y0, x1, y1), where))
    if not order:
        raise DatasetError(f"{csv_path}: no annotation rows")
    return [
        _sample(file, _image_path(file, dirs, f"{csv_path} file {file!r}", allow_outside),
                objects[file], None, str(csv_path))
        for file in order
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Labels


def map_labels(
    samples: list[Sample], mapper: ClassMapper, unmapped: str = "error"
) -> tuple[list[Sample], dict[str, int]]:
    """Map every object's label to model classes; a sample's label is then the label of its
    largest object.

    Args:
        unmapped: ``"error"``: labels that map to no class are listed in one
            :class:`DatasetError` (each with its count and the first file it appears in);
            ``"skip"``: their objects are dropped and counted; ``"keep"``: their objects stay
            with no class (``class_ids == ()``), nothing is counted (``camscope embed``).

    Returns:
        The mapped samples (objects of unmapped labels dropped) and ``label -> skipped objects``.
    """
    if unmapped not in UNMAPPED:
        raise DatasetError(f"unmapped must be one of {UNMAPPED}; got {unmapped!r}")
    cache: dict[str, tuple[int, ...] | None] = {}
    misses: dict[str, list[Any]] = {}  # label -> [objects, first file, deliberately unmapped]
    out = []
    for s in samples:
        kept = []
        for o in s.objects:
            if o.label not in cache:
                try:
                    cache[o.label] = mapper.lookup(o.label)
                except DatasetError as err:
                    raise DatasetError(f"{s.extra.get('annotation', s.id)}: {err}") from None
            ids = cache[o.label]
            if ids or unmapped == "keep":
                kept.append(replace(o, class_ids=ids or ()))
                continue
            entry = misses.setdefault(o.label, [0, s.extra.get("annotation", s.id), ids == ()])
            entry[0] += 1
        out.append(_named(replace(s, objects=tuple(kept))))
    if misses and unmapped == "error":
        listed = "; ".join(
            f"{label!r} ({n} object(s), first in {first}"
            + (", mapped to no class on purpose)" if deliberate else ")")
            for label, (n, first, deliberate) in sorted(misses.items())
        )
        raise DatasetError(
            f"{len(misses)} data-set class(es) are not classes of the model: {listed}. Map them "
            'with --class-map FILE (JSON {"data-set label": ["model class name or index", ...]}) '
            "or skip their objects with --unmapped skip"
        )
    return out, {label: v[0] for label, v in misses.items()}


def _named(sample: Sample) -> Sample:
    """The sample labelled as its largest object (and that object's classes)."""
    if not sample.objects:
        return sample
    largest = max(sample.objects, key=lambda o: (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]))
    return replace(sample, label=largest.label, class_ids=largest.class_ids)


def read_dataset(
    path: str | Path,
    mapper: ClassMapper | None = None,
    *,
    images: str | Path | None = None,
    unmapped: str = "error",
    allow_outside: bool = False,
) -> LabelledData:
    """Read a data set from an annotation file or a folder in a common layout.

    Args:
        path: a ``.csv``, COCO ``.json`` or VOC ``.xml`` file, or a folder
            (:func:`camscope.data.layouts.find_annotations` lists the layouts).
        mapper: label -> model classes (default: ImageNet-1k).
        images: ``--images DIR``: the folder that holds the images.
        unmapped: ``"error"``, ``"skip"`` or ``"keep"`` (see :func:`map_labels`).
        allow_outside: accept image names that leave the data folder.

    Images left without a (mapped) object are skipped (:attr:`LabelledData.skipped`); image files
    that do not exist stay in (they fail when loaded, and the run goes on), unless none exists,
    which is a :class:`DatasetError` naming the folders searched. Object masks, where given, are
    PNG files ``masks/<image stem>.png`` beside the annotations. ``details`` counts the
    ``unmapped`` objects by label, the ``clipped`` boxes and the ``missing`` files.
    """
    from .inputs import stem_of, unique_stems

    layout = find_annotations(path, images)
    samples: list[Sample] = []
    for file in layout.files:
        if layout.kind == "csv":
            samples += parse_csv(file, layout.image_dirs, allow_outside)
        elif layout.kind == "coco":
            samples += parse_coco(file, layout.image_dirs, allow_outside)
        else:
            samples += parse_voc([file], layout.image_dirs, allow_outside)
    mapped, skipped = map_labels(samples, mapper or ClassMapper(), unmapped)
    kept = [s for s in mapped if s.objects]
    empty = [s.id for s in mapped if not s.objects]
    if not kept:
        raise DatasetError(
            f"{layout.description}: no image with an object to localise"
            + (
                f" (every object's class is unmapped: {', '.join(sorted(skipped))})"
                if skipped
                else ""
            )
        )
    missing = [s.source for s in kept if not Path(s.source).is_file()]
    if missing and len(missing) == len(kept):
        raise DatasetError(
            f"annotated images not found: none of {len(kept)} exists (e.g. {missing[0]}); looked in "
            f"{', '.join(str(d) for d in layout.image_dirs)}. Pass the image folder with --images DIR"
        )
    root = Path(path).expanduser()
    masks_dir = (root if root.is_dir() else root.parent) / "masks"
    masks = {p.stem: p for p in masks_dir.glob("*.png")} if masks_dir.is_dir() else {}
    stems = unique_stems([stem_of(s.source) for s in kept])
    items = [
        replace(s, stem=stem, mask=masks.get(Path(s.source).stem)) for s, stem in zip(kept, stems)
    ]
    class_ids: dict[str, tuple[int, ...]] = {}
    for s in items:
        class_ids.setdefault(str(s.label), s.class_ids)
    clipped = sum(int(s.extra.get("clipped", 0)) for s in kept)
    return LabelledData(
        items,
        sorted(class_ids),
        class_ids,
        "annotations",
        layout.description,
        [(sample_id, "no annotated object of a model class") for sample_id in empty],
        _notes(skipped, len(empty), clipped, missing),
        root=str(root.resolve() if root.is_dir() else root.resolve().parent),
        listing=str(root.resolve()),
        details={"unmapped": skipped, "clipped": clipped, "missing": missing},
    )


def _notes(unmapped: dict[str, int], empty: int, clipped: int, missing: list[str]) -> list[str]:
    """One line per thing the user should know about this data (for stderr and the report)."""
    out = []
    if unmapped:
        parts = ", ".join(f"{k!r}: {v}" for k, v in sorted(unmapped.items()))
        out.append(
            f"skipped {sum(unmapped.values())} object(s) whose class maps to no model "
            f"class ({parts})"
        )
    if empty:
        out.append(f"skipped {empty} image(s) left without an object to localise")
    if clipped:
        out.append(f"clipped {clipped} box(es) that reached outside their image")
    if missing:
        out.append(f"{len(missing)} annotated image file(s) not found, e.g. {missing[0]}")
    return out
