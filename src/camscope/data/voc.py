"""PASCAL VOC XML annotations, one file per image (also the format of ImageNet's validation
boxes, whose ``<name>`` is a WordNet synset id such as ``n02123045``, and of the Oxford-IIIT Pet
head boxes, registered here as the ``pet`` layout).

VOC coordinates are 1-based and inclusive; they become pixel-edge boxes (``x0 = xmin - 1``,
``x1 = xmax``; :mod:`camscope.metrics.localization`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DatasetError
from .checks import number, size_of
from .layouts import (
    Layout,
    files_in,
    image_path,
    make_sample,
    register_format,
    subdir,
    unique_dirs,
)

if TYPE_CHECKING:
    from .dataset import Sample


def voc_image_dirs(xml_folder: Path) -> list[Path]:
    """Folders the images of VOC XML files in ``xml_folder`` may be in."""
    up = xml_folder.parent
    return unique_dirs([xml_folder, up / "JPEGImages", up / "images", up])


def _find_voc(folder: Path) -> list[tuple[int, Layout]]:
    found = []
    top = files_in(folder, "*.xml")
    if top:
        found.append((1, Layout("voc", top, voc_image_dirs(folder), f"VOC XML in {folder}")))
    ann = subdir(folder, "annotations")
    nested = files_in(ann, "*.xml")
    if nested and ann is not None:
        found.append((3, Layout("voc", nested, voc_image_dirs(ann), f"VOC XML in {ann}")))
    return found


def _find_pet(folder: Path) -> list[tuple[int, Layout]]:
    xmls = files_in(subdir(subdir(folder, "annotations"), "xmls"), "*.xml")
    if not xmls:
        return []
    dirs = unique_dirs([folder / "images", xmls[0].parent, folder])
    return [(2, Layout("pet", xmls, dirs, f"Oxford-IIIT Pet XML in {xmls[0].parent}"))]


@register_format(
    "voc",
    find=_find_voc,
    suffix=".xml",
    image_dirs=lambda path: voc_image_dirs(path.parent),
    looked_for="*.xml, Annotations/*.xml or annotations/*.xml (VOC)",
    title="VOC",
)
def parse_voc(xml_path: Path, dirs: list[Path], allow_outside: bool = False) -> list[Sample]:
    """One VOC XML file into a sample with unmapped labels (``class_ids == ()``)."""
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
    image = image_path(filename, dirs, f"{where} <filename>", allow_outside)
    return [make_sample(image.name, image, items, size, where)]


register_format(
    "pet",
    find=_find_pet,
    suffix=None,
    image_dirs=lambda path: voc_image_dirs(path.parent),
    looked_for="annotations/xmls/*.xml (Oxford-IIIT Pet)",
    title="Oxford-IIIT Pet",
)(parse_voc)
