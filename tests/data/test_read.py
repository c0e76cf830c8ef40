"""The one reader, read_data: which inputs the commands accept and what they know about each image
(audit's own checks live in test_audit_cli.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camscope.data.dataset import LoadOptions
from camscope.data.inputs import open_images
from camscope.data.read import is_annotated, read_data
from camscope.data.spec import DataOptions
from camscope.diagnosis.report import confusion_counts
from camscope.errors import DatasetError, ImageLoadError, UsageError
from camscope.models import ModelSpec


def picture(path: Path, size: tuple[int, int] = (10, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_class_folders_map_imagenet_names_lemmas_and_synsets(tmp_path) -> None:
    for folder in ("tabby", "n02123045", "Egyptian_cat"):
        picture(tmp_path / folder / "x.png")
    data = read_data(str(tmp_path), [])  # no names: ImageNet's
    assert data.classes == ["Egyptian_cat", "n02123045", "tabby"]
    assert data.class_ids == {"Egyptian_cat": (285,), "n02123045": (281,), "tabby": (281,)}
    assert {i.label for i in data.items} == set(data.classes) and not is_annotated(str(tmp_path))


def test_a_runs_own_class_names_and_an_unmapped_folder(tmp_path) -> None:
    picture(tmp_path / "daisy" / "a.png")
    picture(tmp_path / "tulip" / "b.png")
    data = read_data(str(tmp_path), ["daisy", "rose"], DataOptions(unmapped_folders="fail"))
    assert data.classes == ["daisy"] and data.class_ids == {"daisy": (0,)}
    tulip = next(i for i in data.items if i.label == "tulip")
    assert tulip.error and "tulip" in tulip.error and tulip.class_ids == ()
    with pytest.raises(DatasetError, match="one subfolder per class"):
        read_data(str(tmp_path / "tulip"), ["daisy"])  # images, no class folders
    with pytest.raises(DatasetError, match="no such file"):
        read_data(str(tmp_path / "nothing"), ["daisy"])


def test_annotations_and_builtin_keep_boxes_scaled_to_the_input(tmp_path) -> None:
    picture(tmp_path / "a.png", (20, 10))
    (tmp_path / "boxes.csv").write_text("a.png,cat,2,1,12,5\n")
    assert is_annotated(str(tmp_path)) and is_annotated("builtin:3")
    data = read_data(str(tmp_path), ["dog", "cat"])
    (item,) = data.items
    assert item.label == "cat" and item.class_ids == (1,) and item.boxes == ((2.0, 1.0, 12.0, 5.0),)
    prepared = item.prepare(ModelSpec("m", input_size=(40, 40)), LoadOptions(10**6))
    boxes = prepared.scaled(item.object_boxes)
    assert prepared.x.shape == (1, 3, 40, 40) and boxes.tolist() == [[4.0, 4.0, 24.0, 20.0]]
    bench = read_data("builtin:2", [], size=64)
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
    assert is_annotated(str(root))  # not class folders named "annotations", "images"
    (tmp_path / "map.json").write_text('{"cat": ["tabby", 2]}')
    names = ["persian", "tabby", "siamese"]
    options = DataOptions(class_map=str(tmp_path / "map.json"), unmapped="skip")
    data = read_data(str(root), names, options)
    (item,) = data.items
    # VOC boxes are 1-based pixel indices: x 1..5, y 2..6 -> [0, 5) x [1, 6)
    assert item.label == "cat" and item.class_ids == (1, 2) and item.boxes == ((0, 1, 5, 6),)
    assert any("'dog': 1" in note for note in data.notes)
    with pytest.raises(DatasetError, match="dog"):  # default: an unmapped label stops the run
        read_data(str(root), names, DataOptions(class_map=options.class_map))


def test_class_map_and_skip_for_class_folders(tmp_path) -> None:
    root = tmp_path / "flowers"
    picture(root / "kitty" / "a.png")
    picture(root / "tulip" / "b.png")
    (tmp_path / "map.json").write_text('{"kitty": ["rose"]}')
    options = DataOptions(class_map=str(tmp_path / "map.json"), unmapped="skip")
    data = read_data(str(root), ["daisy", "rose"], options)
    assert data.class_ids == {"kitty": (1,)} and [i.label for i in data.items] == ["kitty"]
    assert data.notes == [
        "skipped 1 image(s) in class folders that name no class of the model (tulip)"
    ]


def test_builtin_for_a_model_trained_on_it_uses_its_classes() -> None:
    # camscope train on builtin:N gives a model whose classes are the object kinds
    classes = ["rocket", "motorcycle", "cup", "cat"]
    data = read_data("builtin:4", classes, size=32)
    for item in data.items:
        assert item.class_ids == (classes.index(item.label),)


def test_unmapped_class_folders_stop_or_fail_one_by_one_as_asked(tmp_path) -> None:
    # audit stops on any unknown folder (all named at once); failures and adversarial let only
    # the unknown folders' images fail; with no known folder at all both stop
    for folder in ("daisy", "tulip", "lily"):
        picture(tmp_path / folder / "a.png")
    with pytest.raises(DatasetError, match=r"2 class\(es\).*'lily', 'tulip'"):
        read_data(str(tmp_path), ["daisy", "rose"])
    data = read_data(str(tmp_path), ["daisy", "rose"], DataOptions(unmapped_folders="fail"))
    failing = {i.label: i.error for i in data.items if i.error}
    assert sorted(failing) == ["lily", "tulip"] and "'lily'" in failing["lily"]
    assert data.classes == ["daisy"] and next(i for i in data.items if i.label == "daisy").decode()
    with pytest.raises(ImageLoadError, match="tulip"):
        next(i for i in data.items if i.label == "tulip").decode()
    with pytest.raises(DatasetError, match="no class folder"):
        read_data(str(tmp_path), ["rose"], DataOptions(unmapped_folders="fail"))
    with pytest.raises(UsageError, match="unmapped_folders"):
        read_data(str(tmp_path), ["rose"], DataOptions(unmapped_folders="skip"))


def test_largest_object_names_the_image_and_unmapped_objects_can_be_kept(tmp_path) -> None:
    picture(tmp_path / "a.png", (20, 10))
    rows = ["a.png,cat,0,0,2,2", "a.png,dog,2,2,12,9", "a.png,cat,14,0,16,2"]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    (item,) = read_data(str(tmp_path), ["dog", "cat"]).items
    assert item.label == "dog" and item.class_ids == (0,) and item.boxes == ((2, 2, 12, 9),)
    assert len(item.object_boxes) == 3  # the pointing game of adversarial counts every object
    prepared = item.prepare(ModelSpec("m", input_size=(10, 20)), LoadOptions(10**6))
    assert prepared.scaled(item.object_boxes).shape == (3, 4)
    kept = read_data(str(tmp_path), ["cat"], DataOptions(unmapped="keep"))
    (item,) = kept.items
    assert item.label == "dog" and item.class_ids == () and kept.notes == []
    with pytest.raises(DatasetError, match="'dog'"):
        read_data(str(tmp_path), ["cat"])
