"""Localization data sets: images with ground-truth boxes, and class names mapped to model classes.

Three annotation formats are read, all into :class:`Sample` records:

* **PASCAL VOC XML**, one file per image (also the format of ImageNet's validation boxes, whose
  ``<name>`` is a WordNet synset id such as ``n02123045``). VOC coordinates are 1-based and
  inclusive; they are converted to pixel-edge boxes (``x0 = xmin - 1``, ``x1 = xmax``).
* **COCO JSON** (``images``, ``annotations`` with ``bbox = [x, y, width, height]``, ``categories``).
* **CSV** with columns ``file, class, x0, y0, x1, y1`` (a header row is optional), boxes already in
  pixel-edge coordinates (``x1 - x0`` is the width). Several rows per file give several objects.

Boxes everywhere are ``(x0, y0, x1, y1)`` floats in the image's own pixels, pixel column ``j``
covering ``[j, j + 1)`` (see :mod:`camscope.metrics.localization`).

Class names go to model class indices with :class:`camscope.data.classes.ClassMapper`.

Example:
    >>> samples = load_dataset("data/voc_subset")  # doctest: +SKIP
    >>> samples[0].objects[0].class_ids  # doctest: +SKIP
    (281,)
"""

from __future__ import annotations

import csv
import json
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from .classes import ClassMapper

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
_SYNSET = re.compile(r"^n\d{8}$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".JPEG")


@dataclass(frozen=True)
class GroundTruth:
    """One annotated object.

    Attributes:
        label: the class name as written in the annotation.
        class_ids: the model classes that count as this object (empty when unmapped).
        box: ``(x0, y0, x1, y1)`` pixel-edge box in the image's pixels.
    """

    label: str
    class_ids: tuple[int, ...]
    box: Box


@dataclass
class Sample:
    """One image and its objects.

    Attributes:
        id: a unique name (file path relative to the data set, or ``builtin-000042``).
        path: the image file, or None for in-memory images (the built-in benchmark).
        objects: the annotated objects.
        image: the RGB image as a ``PIL.Image`` when it is held in memory.
        size: ``(width, height)`` when known from the annotation.
    """

    id: str
    path: Path | None
    objects: list[GroundTruth]
    image: object | None = None
    size: tuple[int, int] | None = None
    extra: dict[str, object] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Readers


def _find_image(folder: Path, name: str) -> Path:
    candidates = [
        folder / name,
        folder.parent / "JPEGImages" / name,
        folder.parent / "images" / name,
    ]
    for cand in candidates:
        if cand.is_file():
            return cand
    stem = Path(name).stem
    for base in (folder, folder.parent / "JPEGImages", folder.parent / "images"):
        for suffix in _IMAGE_SUFFIXES:
            if (base / (stem + suffix)).is_file():
                return base / (stem + suffix)
    return candidates[0]


def _float(text: str | None, where: str, what: str) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {what} is {text!r}, not a number") from None


def _check_box(box: Box, where: str) -> Box:
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        raise DatasetError(f"{where}: box {box} is empty or inverted (need x1 > x0 and y1 > y0)")
    return box


def read_voc(path: str | Path, mapper: ClassMapper | None = None) -> list[Sample]:
    """Read PASCAL VOC XML annotations: one ``.xml`` file, or every ``.xml`` in a folder (also in
    its ``Annotations/`` subfolder). Images are looked up by ``<filename>`` beside the XML, in
    ``../JPEGImages`` or ``../images``; ``<folder>`` is ignored."""
    mapper = mapper or ClassMapper()
    root = Path(path)
    files = (
        [root]
        if root.is_file()
        else sorted(root.glob("*.xml")) or sorted(root.glob("Annotations/*.xml"))
    )
    if not files:
        raise DatasetError(f"{root}: no VOC .xml annotation files found")
    samples = []
    for xml_path in files:
        try:
            tree = ET.parse(xml_path).getroot()
        except ET.ParseError as err:
            raise DatasetError(f"{xml_path}: not valid XML ({err})") from None
        filename = tree.findtext("filename") or xml_path.stem + ".JPEG"
        width = tree.findtext("size/width")
        height = tree.findtext("size/height")
        objects = []
        for obj in tree.iter("object"):
            name = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            if not name or bb is None:
                raise DatasetError(f"{xml_path}: an <object> lacks <name> or <bndbox>")
            where = f"{xml_path} object {name!r}"
            xmin, ymin, xmax, ymax = (
                _float(bb.findtext(k), where, k) for k in ("xmin", "ymin", "xmax", "ymax")
            )
            box = _check_box((xmin - 1, ymin - 1, xmax, ymax), where)
            objects.append(GroundTruth(name, mapper.map(name), box))
        size = (int(float(width)), int(float(height))) if width and height else None
        image = _find_image(xml_path.parent, filename)
        samples.append(Sample(id=image.name, path=image, objects=objects, size=size))
    return samples


def read_coco(
    path: str | Path, mapper: ClassMapper | None = None, image_dir: str | Path | None = None
) -> list[Sample]:
    """Read a COCO-style JSON file. Category names are mapped with ``mapper``; images are looked up
    under ``image_dir`` (default: the JSON's folder, then its ``images/`` subfolder). Crowd
    annotations are skipped; images without annotations are kept with no objects."""
    mapper = mapper or ClassMapper()
    json_path = Path(path)
    try:
        data = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{json_path}: cannot read COCO JSON ({err})") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(f"{json_path}: no {key!r} list; is this a COCO annotation file?")
    cats = {c["id"]: c["name"] for c in data["categories"]}
    mapped = {cid: mapper.map(name) for cid, name in cats.items()}
    base = Path(image_dir) if image_dir else json_path.parent
    by_image: dict[object, list[GroundTruth]] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        if ann.get("iscrowd"):
            continue
        where = f"{json_path} annotation {ann.get('id')}"
        if ann.get("image_id") not in by_image:
            raise DatasetError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in cats:
            raise DatasetError(
                f"{where}: category_id {ann.get('category_id')!r} is not in 'categories'"
            )
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise DatasetError(f"{where}: bbox must be [x, y, width, height]; got {bbox!r}")
        x, y, w, h = (_float(str(v), where, "bbox") for v in bbox)
        box = _check_box((x, y, x + w, y + h), where)
        cid = ann["category_id"]
        by_image[ann["image_id"]].append(GroundTruth(cats[cid], mapped[cid], box))
    samples = []
    for img in data["images"]:
        name = img["file_name"]
        image = base / name if (base / name).is_file() else _find_image(base / "images", name)
        size = (
            (int(img["width"]), int(img["height"])) if "width" in img and "height" in img else None
        )
        samples.append(Sample(id=name, path=image, objects=by_image[img["id"]], size=size))
    return samples


def read_csv(path: str | Path, mapper: ClassMapper | None = None) -> list[Sample]:
    """Read ``file, class, x0, y0, x1, y1`` rows (header optional; files relative to the CSV)."""
    mapper = mapper or ClassMapper()
    csv_path = Path(path)
    try:
        rows = list(csv.reader(csv_path.read_text().splitlines()))
    except OSError as err:
        raise DatasetError(f"{csv_path}: cannot read ({err})") from None
    order: list[str] = []
    objects: dict[str, list[GroundTruth]] = {}
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
        x0, y0, x1, y1 = (
            _float(v, where, col) for v, col in zip(row[2:], ("x0", "y0", "x1", "y1"))
        )
        box = _check_box((x0, y0, x1, y1), where)
        if file not in objects:
            order.append(file)
            objects[file] = []
        objects[file].append(GroundTruth(label, mapper.map(label), box))
    if not order:
        raise DatasetError(f"{csv_path}: no annotation rows")
    return [Sample(id=f, path=csv_path.parent / f, objects=objects[f]) for f in order]


def load_dataset(path: str | Path, mapper: ClassMapper | None = None) -> list[Sample]:
    """Read a data set from a VOC folder / file, a COCO ``.json`` or a ``.csv``.

    A folder is searched for, in order, ``*.csv``, ``*.json`` (COCO) and ``*.xml`` /
    ``Annotations/*.xml`` (VOC). Image files must exist; a missing one is a :class:`DatasetError`
    naming it.
    """
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix == ".csv":
            samples = read_csv(root, mapper)
        elif suffix == ".json":
            samples = read_coco(root, mapper)
        elif suffix == ".xml":
            samples = read_voc(root, mapper)
        else:
            raise DatasetError(
                f"{root}: unknown annotation format (use .csv, COCO .json or VOC .xml)"
            )
    else:
        csvs, jsons = sorted(root.glob("*.csv")), sorted(root.glob("*.json"))
        if len(csvs) + len(jsons) > 1:
            raise DatasetError(
                f"{root}: several annotation files ({', '.join(p.name for p in csvs + jsons)}); "
                "pass the one to use"
            )
        if csvs:
            samples = read_csv(csvs[0], mapper)
        elif jsons:
            samples = read_coco(jsons[0], mapper)
        else:
            samples = read_voc(root, mapper)
    missing = [s.path for s in samples if s.path is not None and not s.path.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} annotated image(s) not found, e.g. {missing[0]}; put the images beside "
            "the annotations (or in JPEGImages/ or images/)"
        )
    return samples
