"""Which inputs the diagnosis commands accept and what they know about each image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camscope.analysis.diagnosis_inputs import (
    DataOptions,
    is_data_argument,
    open_images,
    open_labelled,
)
from camscope.analysis.report import confusion_counts
from camscope.errors import DatasetError


def picture(path: Path, size: tuple[int, int] = (10, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_class_folders_map_imagenet_names_lemmas_and_synsets(tmp_path) -> None:
    for folder in ("tabby", "n02123045", "Egyptian_cat"):
        picture(tmp_path / folder / "x.png")
    data = open_labelled(str(tmp_path), [], (224, 224))  # no names: ImageNet's
    assert data.classes == ["Egyptian_cat", "n02123045", "tabby"]
    assert data.class_ids == {"Egyptian_cat": (285,), "n02123045": (281,), "tabby": (281,)}
    assert {i.label for i in data.items} == set(data.classes) and not is_data_argument(
        str(tmp_path)
    )


def test_a_runs_own_class_names_and_an_unmapped_folder(tmp_path) -> None:
    picture(tmp_path / "daisy" / "a.png")
    picture(tmp_path / "tulip" / "b.png")
    data = open_labelled(str(tmp_path), ["daisy", "rose"], (32, 32))
    assert data.classes == ["daisy"] and data.class_ids == {"daisy": (0,)}
    tulip = next(i for i in data.items if i.label == "tulip")
    assert tulip.error and "tulip" in tulip.error and tulip.class_ids == ()
    with pytest.raises(DatasetError, match="one subfolder per class"):
        open_labelled(str(tmp_path / "tulip"), ["daisy"], (32, 32))  # images, no class folders
    with pytest.raises(DatasetError, match="no such file"):
        open_labelled(str(tmp_path / "nothing"), ["daisy"], (32, 32))


def test_annotations_and_builtin_keep_boxes_scaled_to_the_input(tmp_path) -> None:
    picture(tmp_path / "a.png", (20, 10))
    (tmp_path / "boxes.csv").write_text("a.png,cat,2,1,12,5\n")
    assert is_data_argument(str(tmp_path)) and is_data_argument("builtin:3")
    data = open_labelled(str(tmp_path), ["dog", "cat"], (40, 40))
    (item,) = data.items
    assert item.label == "cat" and item.class_ids == (1,) and item.boxes == ((2.0, 1.0, 12.0, 5.0),)
    from camscope.models import ModelSpec

    _, x, boxes = item.load(ModelSpec("m", input_size=(40, 40)), 10**6)
    assert x.shape == (1, 3, 40, 40) and boxes.tolist() == [[4.0, 4.0, 24.0, 20.0]]
    bench = open_labelled("builtin:2", [], (64, 64))
    assert len(bench.items) == 2 and all(i.boxes and i.class_ids for i in bench.items)
    assert bench.items[0].image.size == (64, 64)


def test_plain_images_have_no_class(tmp_path) -> None:
    picture(tmp_path / "one.png")
    data = open_images([str(tmp_path)])
    assert [(i.stem, i.label, i.class_ids) for i in data.items] == [("one", None, ())]
    assert open_images([]).items[0].source == "demo:chelsea"


def test_confusion_counts_put_outside_predictions_in_other() -> None:
    counts = confusion_counts(["a", "b"], [("a", "a"), ("a", "b"), ("b", None), ("b", "b")])
    assert counts.tolist() == [[1, 1, 0], [0, 1, 1]]


def _pet_xml(path: Path, filename: str, name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation><filename>{filename}</filename><size><width>10</width><height>8</height>"
        f"</size><object><name>{name}</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>5</xmax>"
        "<ymax>6</ymax></bndbox></object></annotation>"
    )


def test_pet_layout_with_a_class_map_and_unmapped_labels(tmp_path) -> None:
    # Oxford-IIIT Pet: annotations/xmls/*.xml, images/*.jpg; its label "cat" is no class of the
    # model until the class map says which classes count.
    root = tmp_path / "pets"
    picture(root / "images" / "Abyssinian_1.png")
    picture(root / "images" / "beagle_2.png")
    _pet_xml(root / "annotations" / "xmls" / "Abyssinian_1.xml", "Abyssinian_1.png", "cat")
    _pet_xml(root / "annotations" / "xmls" / "beagle_2.xml", "beagle_2.png", "dog")
    assert is_data_argument(str(root))  # not class folders named "annotations", "images"
    (tmp_path / "map.json").write_text('{"cat": ["tabby", 2]}')
    names = ["persian", "tabby", "siamese"]
    options = DataOptions(class_map=str(tmp_path / "map.json"), unmapped="skip")
    data = open_labelled(str(root), names, (16, 16), options)
    (item,) = data.items
    # VOC boxes are 1-based pixel indices: x 1..5, y 2..6 -> [0, 5) x [1, 6)
    assert item.label == "cat" and item.class_ids == (1, 2) and item.boxes == ((0, 1, 5, 6),)
    assert any("'dog': 1" in note for note in data.notes)
    with pytest.raises(DatasetError, match="dog"):  # default: an unmapped label stops the run
        open_labelled(str(root), names, (16, 16), DataOptions(class_map=options.class_map))


def test_class_map_and_skip_for_class_folders(tmp_path) -> None:
    root = tmp_path / "flowers"
    picture(root / "kitty" / "a.png")
    picture(root / "tulip" / "b.png")
    (tmp_path / "map.json").write_text('{"kitty": ["rose"]}')
    options = DataOptions(class_map=str(tmp_path / "map.json"), unmapped="skip")
    data = open_labelled(str(root), ["daisy", "rose"], (32, 32), options)
    assert data.class_ids == {"kitty": (1,)} and [i.label for i in data.items] == ["kitty"]
    assert data.notes == [
        "skipped 1 image(s) in class folders that name no class of the model (tulip)"
    ]


def test_builtin_for_a_model_trained_on_it_uses_its_classes() -> None:
    # camscope train on builtin:N gives a model whose classes are the object kinds
    classes = ["rocket", "motorcycle", "cup", "cat"]
    data = open_labelled("builtin:4", classes, (32, 32))
    for item in data.items:
        assert item.class_ids == (classes.index(item.label),)
