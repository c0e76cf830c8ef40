"""COCO JSON annotations (``images``, ``annotations`` with ``bbox = [x, y, width, height]``,
``categories``); crowd annotations are skipped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DatasetError
from .checks import Box, key_field, load_json, number, records, size_of, text_field
from .layouts import (
    TOP_LEVEL,
    Layout,
    files_in,
    image_path,
    make_sample,
    register_format,
    several_files,
    subdir,
    unique_dirs,
)

if TYPE_CHECKING:
    from .dataset import Sample


def coco_image_dirs(json_path: Path) -> list[Path]:
    """Folders the images of a COCO file may be in: beside it, ``images/``, and for
    ``DATA/annotations/instances_val2017.json`` also ``DATA/``, ``DATA/images/``, ``DATA/val2017/``
    and ``DATA/images/val2017/``."""
    here = json_path.parent
    dirs = [here, here / "images"]
    if here.name.lower() == "annotations":
        root = here.parent
        dirs += [root, root / "images"]
        split = re.sub(r"^(instances|person_keypoints|captions)_", "", json_path.stem)
        if split and split != json_path.stem:
            dirs.append(root / split)
            dirs.append(root / "images" / split)
    return unique_dirs(dirs)


def _pick(files: list[Path], where: Path) -> Path:
    if len(files) == 1:
        return files[0]
    instances = [p for p in files if p.name.startswith("instances_")]
    if len(instances) == 1:
        return instances[0]
    raise several_files(where, files)


def _find(folder: Path) -> list[tuple[int, Layout]]:
    top = files_in(folder, "*.json")
    if top:
        return [(TOP_LEVEL, Layout("coco", top, coco_image_dirs(top[0]), f"COCO {top[0]}"))]
    ann = subdir(folder, "annotations")
    nested = files_in(ann, "*.json")
    if not nested or ann is None:
        return []
    chosen = _pick(nested, ann)
    return [(4, Layout("coco", [chosen], coco_image_dirs(chosen), f"COCO {chosen}"))]


@register_format(
    "coco",
    find=_find,
    suffix=".json",
    image_dirs=coco_image_dirs,
    looked_for="*.json or annotations/*.json (COCO)",
    title="COCO",
)
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
        path = image_path(name, dirs, f"{where} 'file_name'", allow_outside)
        samples.append(make_sample(name, path, items[image_id], size, str(json_path)))
    return samples
