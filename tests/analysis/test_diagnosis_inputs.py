"""Which inputs the diagnosis commands accept and what they know about each image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camscope.analysis.diagnosis_inputs import is_data_argument, open_images, open_labelled
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
