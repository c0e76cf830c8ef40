"""Finding annotations and images in the common data-set layouts, built here in tmp_path
(issue 16.6)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from camscope.data.annotations import read_dataset
from camscope.data.layouts import find_annotations
from camscope.errors import DatasetError


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30)).save(path)


def _xml(path, filename, name="cat"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation><filename>{filename}</filename><size><width>40</width><height>30</height>"
        f"</size><object><name>{name}</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>20</xmax>"
        "<ymax>20</ymax></bndbox></object></annotation>"
    )


def _coco(path, file_name="000001.jpg"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": file_name, "width": 40, "height": 30}],
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 17, "bbox": [1, 1, 10, 10]}
                ],
                "categories": [{"id": 17, "name": "cat"}],
            }
        )
    )


def test_voc_layout(tmp_path):
    _xml(tmp_path / "Annotations" / "000001.xml", "000001.jpg")
    _image(tmp_path / "JPEGImages" / "000001.jpg")
    (s,) = read_dataset(tmp_path).items
    assert s.path == tmp_path / "JPEGImages" / "000001.jpg"


def test_lowercase_annotations_folder(tmp_path):
    _xml(tmp_path / "annotations" / "x.xml", "x.jpg")
    _image(tmp_path / "images" / "x.jpg")
    assert find_annotations(tmp_path).kind == "voc"
    assert read_dataset(tmp_path).items[0].path == tmp_path / "images" / "x.jpg"


def test_oxford_pet_layout(tmp_path):
    _xml(tmp_path / "annotations" / "xmls" / "Abyssinian_1.xml", "Abyssinian_1.jpg")
    (tmp_path / "annotations" / "trimaps").mkdir()
    (tmp_path / "annotations" / "list.txt").write_text("# not an annotation file\n")
    _image(tmp_path / "images" / "Abyssinian_1.jpg")
    layout = find_annotations(tmp_path)
    assert layout.kind == "pet" and "Oxford-IIIT Pet" in layout.description
    (s,) = read_dataset(tmp_path).items
    assert s.path == tmp_path / "images" / "Abyssinian_1.jpg"


def test_coco_folder_with_annotations_and_split_folders(tmp_path):
    _coco(tmp_path / "annotations" / "instances_val2017.json")
    (tmp_path / "annotations" / "captions_val2017.json").write_text("{}")
    _image(tmp_path / "val2017" / "000001.jpg")
    layout = find_annotations(tmp_path)
    assert layout.kind == "coco" and layout.files[0].name == "instances_val2017.json"
    assert read_dataset(tmp_path).items[0].path == tmp_path / "val2017" / "000001.jpg"


def test_coco_file_under_annotations_finds_images_beside_the_folder(tmp_path):
    _coco(tmp_path / "annotations" / "train.json")
    _image(tmp_path / "images" / "000001.jpg")
    data = read_dataset(tmp_path / "annotations" / "train.json")
    assert data.items[0].path == tmp_path / "images" / "000001.jpg"


def test_images_option(tmp_path):
    _coco(tmp_path / "ann" / "x.json")
    _image(tmp_path / "elsewhere" / "000001.jpg")
    with pytest.raises(DatasetError, match=r"not found.*--images DIR"):
        read_dataset(tmp_path / "ann" / "x.json")
    data = read_dataset(tmp_path / "ann" / "x.json", images=tmp_path / "elsewhere")
    assert data.items[0].path == tmp_path / "elsewhere" / "000001.jpg"
    with pytest.raises(DatasetError, match=r"--images .*no such folder"):
        read_dataset(tmp_path / "ann", images=tmp_path / "nope")


def test_nothing_found_names_what_was_looked_for(tmp_path):
    _image(tmp_path / "images" / "a.jpg")
    with pytest.raises(DatasetError) as err:
        read_dataset(tmp_path)
    text = str(err.value)
    for looked in (
        "*.csv",
        "*.json",
        "Annotations/*.xml",
        "annotations/xmls/*.xml",
        "annotations/*.json",
    ):
        assert looked in text
    assert "builtin:N" in text


def test_missing_images_of_some_annotations_fail_later_not_now(tmp_path):
    _xml(tmp_path / "Annotations" / "a.xml", "a.jpg")
    _xml(tmp_path / "Annotations" / "b.xml", "b.jpg")
    _image(tmp_path / "JPEGImages" / "a.jpg")
    data = read_dataset(tmp_path)
    assert [s.id for s in data.items] == ["a.jpg", "b.jpg"]
    assert len(data.details["missing"]) == 1 and "not found" in data.notes[0]
