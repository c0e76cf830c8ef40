"""VOC / COCO / CSV readers and the ImageNet class mapping, on small files written here."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from camscope.data.annotations import read_dataset
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
    (s,) = read_dataset(tmp_path).items
    assert s.path == tmp_path / "a.JPEG" and s.size == (40, 30)
    assert [o.box for o in s.objects] == [(0.0, 1.0, 10.0, 20.0), (10.0, 4.0, 40.0, 30.0)]
    assert [o.class_ids for o in s.objects] == [(281,), (968,)]
    assert read_dataset(tmp_path / "a.xml").items[0].objects == s.objects
    assert (s.label, s.class_ids) == ("cup", (968,))  # the largest object names the image


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
    (s,) = read_dataset(tmp_path / "ann.json").items
    assert s.path == tmp_path / "images" / "b.png"
    assert [(o.label, o.class_ids, o.box) for o in s.objects] == [
        ("Egyptian cat", (285,), (2.5, 3.0, 12.5, 7.0))
    ]
    data["annotations"][0]["image_id"] = 99
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="image_id 99"):
        read_dataset(tmp_path / "ann.json")


def test_csv_reader_groups_rows_and_validates(tmp_path):
    _image(tmp_path / "c.png")
    (tmp_path / "boxes.csv").write_text(
        "file,class,x0,y0,x1,y1\nc.png,tabby,1,2,11,12\nc.png,cup|espresso,20,0,40,30\n"
    )
    (s,) = read_dataset(tmp_path / "boxes.csv").items
    assert [o.box for o in s.objects] == [(1.0, 2.0, 11.0, 12.0), (20.0, 0.0, 40.0, 30.0)]
    assert s.objects[1].class_ids == (968, 967)
    assert read_dataset(tmp_path).items[0].id == "c.png"
    (tmp_path / "boxes.csv").write_text("c.png,tabby,5,2,4,12\n")
    with pytest.raises(DatasetError, match="line 1: box"):
        read_dataset(tmp_path / "boxes.csv")
    (tmp_path / "boxes.csv").write_text("missing.png,tabby,1,2,4,12\n")
    with pytest.raises(DatasetError, match="not found"):
        read_dataset(tmp_path / "boxes.csv")


# ---------------------------------------------------------------------------------------------
# Malformed annotations are usage errors that name the file and the field (issue 15.5)


def _coco(**changes):
    data = {
        "images": [{"id": 7, "file_name": "b.png", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [2, 3, 10, 4]}],
        "categories": [{"id": 3, "name": "tabby"}],
    }
    for path, value in changes.items():
        *keys, last = path.split(".")
        node = data
        for k in keys:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"categories.0.name": _DELETE}, "'name'"),
        ({"images.0.file_name": _DELETE}, "'file_name'"),
        ({"images.0.id": _DELETE}, "'id'"),
        ({"categories.0.id": [3]}, "'id' must be a number or a string; got list"),
        ({"annotations.0.image_id": [7]}, "'image_id' must be a number or a string"),
        ({"images.0.width": "wide"}, "width is 'wide', not a number"),
        ({"annotations.0.bbox": [2, 3, "x", 4]}, "'bbox' value is 'x'"),
        ({"annotations.0.bbox": [2, 3, float("inf"), 4]}, "not a finite number"),
        ({"images.0": "b.png"}, "images[0]: expected an object"),
    ],
)
def test_malformed_coco_names_file_and_field(tmp_path, changes, field):
    _image(tmp_path / "b.png")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_coco(**changes)))
    with pytest.raises(DatasetError) as err:
        read_dataset(path)
    assert str(path) in str(err.value) and field in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null", "got NoneType"),
        ("[1, 2]", "got list"),
        ('{"images": null, "annotations": [], "categories": []}', "no 'images' list"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("{", "not valid JSON"),
    ],
)
def test_coco_root_problems_are_usage_errors(tmp_path, text, expected):
    path = tmp_path / "ann.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=re.escape(expected)):
        read_dataset(path)


def _voc(tmp_path, box="<xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>20</ymax>", size=None,
         filename="a.png", name="tabby"):  # fmt: skip
    size = size or "<width>40</width><height>30</height>"
    (tmp_path / "a.xml").write_text(
        f"<annotation><filename>{filename}</filename><size>{size}</size>"
        f"<object><name>{name}</name><bndbox>{box}</bndbox></object></annotation>"
    )
    return tmp_path / "a.xml"


def test_voc_bad_width_is_a_usage_error_naming_the_field(tmp_path):
    _image(tmp_path / "a.png")
    xml = _voc(tmp_path, size="<width>abc</width><height>30</height>")
    with pytest.raises(DatasetError, match=r"a\.xml <size>: width is 'abc', not a number"):
        read_dataset(tmp_path)
    _voc(tmp_path, box="<xmin>1</xmin><ymin>2</ymin><xmax>inf</xmax><ymax>20</ymax>")
    with pytest.raises(DatasetError, match=r"<xmax> is 'inf', not a finite number"):
        read_dataset(xml)


def test_boxes_are_clipped_to_the_image_or_refused(tmp_path):
    _image(tmp_path / "a.png")  # 40 x 30
    _voc(tmp_path, box="<xmin>-5</xmin><ymin>2</ymin><xmax>1e300</xmax><ymax>20</ymax>")
    data = read_dataset(tmp_path)
    # VOC is 1-based: xmin -5 -> x0 = -6, clipped to 0; 1e300 clipped to the width 40
    assert data.items[0].objects[0].box == (0.0, 1.0, 40.0, 20.0)
    assert data.details["clipped"] == 1 and "clipped 1 box" in " ".join(data.notes)
    _voc(tmp_path, box="<xmin>50</xmin><ymin>2</ymin><xmax>60</xmax><ymax>20</ymax>")
    with pytest.raises(DatasetError, match="lies outside the 40 x 30 image"):
        read_dataset(tmp_path)


@pytest.mark.parametrize("name", ["../outside.png", "/etc/outside.png", "sub/../../outside.png"])
def test_image_paths_that_leave_the_data_folder_are_refused(tmp_path, name):
    data_dir = tmp_path / "data"
    (data_dir / "sub").mkdir(parents=True)
    _image(tmp_path / "outside.png")
    _voc(data_dir, filename=name)
    with pytest.raises(DatasetError, match=r"leaves the data folder.*--allow-outside-paths"):
        read_dataset(data_dir)
    (data_dir / "a.xml").unlink()
    (data_dir / "ann.json").write_text(json.dumps(_coco(**{"images.0.file_name": name})))
    with pytest.raises(DatasetError, match="leaves the data folder"):
        read_dataset(data_dir)
    (data_dir / "ann.json").unlink()
    (data_dir / "b.csv").write_text(f"{name},tabby,1,2,10,20\n")
    with pytest.raises(DatasetError, match="leaves the data folder"):
        read_dataset(data_dir)
    if not name.startswith("/"):  # the opt-in reads it
        (sample,) = read_dataset(data_dir, allow_outside=True).items
        assert sample.path is not None and sample.path.resolve() == (tmp_path / "outside.png")


def test_every_unknown_class_is_listed_at_once_with_its_file(tmp_path):
    _image(tmp_path / "c.png")
    (tmp_path / "boxes.csv").write_text(
        "c.png,tabby,1,2,11,12\nc.png,person,20,0,40,30\nd.png,zebra crossing,1,1,5,5\n"
        "d.png,person,1,1,5,5\n"
    )
    with pytest.raises(DatasetError) as err:
        read_dataset(tmp_path)
    text = str(err.value)
    assert "2 data-set class(es)" in text and "boxes.csv" in text
    assert "'person' (2 object(s)" in text and "'zebra crossing' (1 object(s)" in text
    assert "--class-map" in text and "--unmapped skip" in text
    data = read_dataset(tmp_path, unmapped="skip")
    assert data.details["unmapped"] == {"person": 2, "zebra crossing": 1}
    assert [s.id for s in data.items] == ["c.png"] and [i for i, _ in data.skipped] == ["d.png"]
    assert [o.label for o in data.items[0].objects] == ["tabby"]
