"""Labels to model classes: the built-in VOC map, --class-map files, and one resolver shared by
``evaluate`` (data-set labels) and ``explain --target`` (issue 16.5)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from camscope.data.annotations import read_dataset
from camscope.data.classes import (
    VOC_TO_IMAGENET,
    ClassMapper,
    imagenet_names,
    names_a_class,
    parse_target,
    read_class_map,
)
from camscope.errors import DatasetError, TargetError

VOC_CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def test_voc_map_covers_the_twenty_classes_with_the_intended_imagenet_classes():
    names = imagenet_names()
    assert sorted(VOC_TO_IMAGENET) == sorted(VOC_CLASSES)
    assert VOC_TO_IMAGENET["person"] == ()
    # the ranges start and end where the comments say
    dogs = VOC_TO_IMAGENET["dog"]
    assert (names[dogs[0]], names[dogs[-1]], len(dogs)) == ("Chihuahua", "Mexican hairless", 118)
    assert [names[i] for i in VOC_TO_IMAGENET["cat"]] == [
        "tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat",
    ]  # fmt: skip
    birds = {names[i] for i in VOC_TO_IMAGENET["bird"]}
    assert {
        "cock",
        "great grey owl",
        "black grouse",
        "black swan",
        "white stork",
        "albatross",
    } <= birds
    assert "tench" not in birds and "grey whale" not in birds and len(birds) == 59
    assert [names[i] for i in VOC_TO_IMAGENET["motorbike"]] == ["moped", "motor scooter"]
    assert [names[i] for i in VOC_TO_IMAGENET["tvmonitor"]] == ["monitor", "screen", "television"]
    assert names[VOC_TO_IMAGENET["diningtable"][0]] == "dining table"


def test_voc_names_map_only_for_imagenet_models_and_never_shadow_model_names():
    m = ClassMapper()
    assert m.lookup("cat") == VOC_TO_IMAGENET["cat"]
    assert m.lookup("person") == ()  # mapped to nothing on purpose
    assert m.lookup("tabby") == (281,)  # a model name stays one class
    other = ClassMapper(["cat", "dog"])
    assert other.lookup("cat") == (0,) and other.lookup("bird") is None


def test_one_message_lists_every_unknown_class_then_voc_data_evaluates(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename>"
        + "".join(
            f"<object><name>{n}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
            "<ymax>9</ymax></bndbox></object>"
            for n in ("cat", "person", "gnu", "gnu")
        )
        + "</annotation>"
    )
    with pytest.raises(DatasetError) as err:
        read_dataset(tmp_path)
    assert "'gnu' (2 object(s), first in" in str(err.value) and "a.xml" in str(err.value)
    assert "'person' (1 object(s)" in str(err.value) and "on purpose" in str(err.value)
    data = read_dataset(tmp_path, unmapped="skip")
    assert data.details["unmapped"] == {"person": 1, "gnu": 2}
    assert data.items[0].objects[0].class_ids == VOC_TO_IMAGENET["cat"]


def test_class_map_file(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(
        json.dumps({"kitty": ["tabby", "tiger cat", 285], "human": [], "moggy": "tabby"})
    )
    mapped = read_class_map(path, ClassMapper())
    assert mapped == {"kitty": (281, 282, 285), "human": (), "moggy": (281,)}
    mapper = ClassMapper(aliases=mapped)
    assert mapper.map("kitty") == (281, 282, 285) and mapper.lookup("human") == ()
    path.write_text(json.dumps({"a": ["tabbby", 5000], "b": [True]}))
    with pytest.raises(DatasetError) as err:
        read_class_map(path, ClassMapper())
    text = str(err.value)
    assert str(path) in text and "3 entries" in text
    assert "'tabbby'" in text and "5000 is out of range" in text and "True" in text
    path.write_text("[1]")
    with pytest.raises(DatasetError, match="expected an object"):
        read_class_map(path, ClassMapper())


@pytest.mark.parametrize(
    ("name", "index"),
    [("tabby", 281), ("tabby cat", 281), ("n02123045", 281), ("Tiger_Cat", 282), ("crane", 517)],
)
def test_explain_target_and_evaluate_labels_resolve_alike(name, index):
    names = imagenet_names()
    assert parse_target(name, names) == index
    assert ClassMapper(names).map(name) == (index,)


def test_only_names_need_the_model_s_class_names():
    assert names_a_class("tabby") and names_a_class("topk:") and names_a_class("²")
    assert not any(names_a_class(t) for t in ("top1", " TopK:12 ", "285", "-1", "+3"))
    assert parse_target("+3", max_k=5) == 3 and parse_target("top3", max_k=5) == "topk:3"
    with pytest.raises(TargetError, match="at most 5"):
        parse_target("top6", max_k=5)


def test_target_names_synonyms_and_ambiguity():
    hf_style = ["tabby, tabby cat", "tiger cat", "crane", "crane bird, crane"]
    assert parse_target("tabby", hf_style) == 0
    assert parse_target("tabby cat", hf_style) == 0
    assert parse_target("crane", hf_style) == 2  # an exact name beats a synonym
    with pytest.raises(TargetError, match="matches several classes"):
        parse_target("cat", imagenet_names())  # VOC's cat: five ImageNet classes
    with pytest.raises(TargetError, match="closest names: 'tabby'"):
        parse_target("tabbby", imagenet_names())
