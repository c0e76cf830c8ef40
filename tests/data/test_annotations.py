"""VOC / COCO / CSV readers and the ImageNet class mapping, on small files written here."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from camscope.data.annotations import load_dataset, read_coco, read_csv, read_voc
from camscope.data.classes import ClassMapper
from camscope.errors import DatasetError


def _image(path, size=(40, 30)):
    Image.new("RGB", size, (10, 20, 30)).save(path)


def test_class_mapper_synsets_names_lemmas_indices():
    m = ClassMapper()
    assert m.map("n02123045") == (281,)  # tabby
    assert m.map("n01440764") == (0,)  # tench, first ImageNet class
    assert m.map("Tiger Cat") == (282,)
    assert m.map("tabby cat") == (281,)  # WordNet lemma
    assert m.map("tabby|285|n02123159") == (281, 285, 282)
    with pytest.raises(DatasetError, match="tabbby"):
        m.map("tabbby")
    with pytest.raises(DatasetError, match="out of range"):
        m.map("1000")
    custom = ClassMapper(["dog", "cat"], aliases={"kitty": [1]})
    assert custom.map("cat") == (1,) and custom.map("kitty") == (1,)


def test_voc_reader_converts_one_based_inclusive_boxes(tmp_path):
    _image(tmp_path / "a.JPEG")
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.JPEG</filename><size><width>40</width><height>30</height></size>"
        "<object><name>n02123045</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax>"
        "<ymax>20</ymax></bndbox></object>"
        "<object><name>cup</name><bndbox><xmin>11</xmin><ymin>5</ymin><xmax>40</xmax>"
        "<ymax>30</ymax></bndbox></object></annotation>"
    )
    (s,) = read_voc(tmp_path)
    assert s.path == tmp_path / "a.JPEG" and s.size == (40, 30)
    assert [o.box for o in s.objects] == [(0.0, 1.0, 10.0, 20.0), (10.0, 4.0, 40.0, 30.0)]
    assert [o.class_ids for o in s.objects] == [(281,), (968,)]
    assert load_dataset(tmp_path)[0].objects == s.objects


def test_coco_reader(tmp_path):
    (tmp_path / "images").mkdir()
    _image(tmp_path / "images" / "b.png")
    data = {
        "images": [{"id": 7, "file_name": "b.png", "width": 40, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [2.5, 3, 10, 4]},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ],
        "categories": [{"id": 3, "name": "Egyptian cat"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    (s,) = read_coco(tmp_path / "ann.json")
    assert s.path == tmp_path / "images" / "b.png"
    assert [(o.label, o.class_ids, o.box) for o in s.objects] == [
        ("Egyptian cat", (285,), (2.5, 3.0, 12.5, 7.0))
    ]
    data["annotations"][0]["image_id"] = 99
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="image_id 99"):
        read_coco(tmp_path / "ann.json")


def test_csv_reader_groups_rows_and_validates(tmp_path):
    _image(tmp_path / "c.png")
    (tmp_path / "boxes.csv").write_text(
        "file,class,x0,y0,x1,y1\nc.png,tabby,1,2,11,12\nc.png,cup|espresso,20,0,40,30\n"
    )
    (s,) = read_csv(tmp_path / "boxes.csv")
    assert [o.box for o in s.objects] == [(1.0, 2.0, 11.0, 12.0), (20.0, 0.0, 40.0, 30.0)]
    assert s.objects[1].class_ids == (968, 967)
    assert load_dataset(tmp_path)[0].id == "c.png"
    (tmp_path / "boxes.csv").write_text("c.png,tabby,5,2,4,12\n")
    with pytest.raises(DatasetError, match="line 1: box"):
        read_csv(tmp_path / "boxes.csv")
    (tmp_path / "boxes.csv").write_text("missing.png,tabby,1,2,4,12\n")
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "boxes.csv")
