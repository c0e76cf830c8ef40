"""Training data: class folders, CIFAR python folders and the built-in set's training stream, with
their splits."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from tiny_data import write_cifar10, write_cifar100, write_image_folder

from camscope.data.cifar import read_batch
from camscope.data.read import read_data
from camscope.errors import DatasetError, UsageError
from camscope.training.data import labels_of, load_training_data, stratified_split


def test_stratified_split_is_seeded_and_keeps_every_class() -> None:
    labels = [0] * 10 + [1] * 5 + [2] * 2
    train, val = stratified_split(labels, ["a", "b", "c"], 0.2, seed=3)
    # round(0.2 * n) per class, at least one: 2 + 1 + 1 (0.2 * 2 rounds to 0 -> 1)
    assert sorted(np.bincount([labels[i] for i in val])) == [1, 1, 2]
    assert sorted(train + val) == list(range(len(labels)))
    assert stratified_split(labels, ["a", "b", "c"], 0.2, seed=3) == (train, val)
    assert stratified_split(labels, ["a", "b", "c"], 0.2, seed=4) != (train, val)


def test_a_class_with_one_image_cannot_be_split() -> None:
    with pytest.raises(DatasetError, match="'lonely' has 1 image"):
        stratified_split([0, 0, 1], ["many", "lonely"], 0.5, seed=0)


def test_class_folders_split_and_validation_folder(tmp_path) -> None:
    root = write_image_folder(tmp_path / "train", ("ant", "bee"), per_class=10)
    data = load_training_data(str(root), None, 0.2, 0, image_size=16)
    assert data.classes == ["ant", "bee"]
    assert (len(data.train), len(data.val)) == (16, 4)
    assert data.summary()["val_per_class"] == {"ant": 2, "bee": 2}
    held = write_image_folder(tmp_path / "val", ("ant", "bee"), per_class=3)
    data = load_training_data(str(root), str(held), 0.2, 0, image_size=16)
    assert (len(data.train), len(data.val)) == (20, 6)


def test_class_missing_from_validation_is_named(tmp_path) -> None:
    root = write_image_folder(tmp_path / "train", ("ant", "bee", "cow"), per_class=3)
    held = write_image_folder(tmp_path / "val", ("ant", "cow"), per_class=2)
    with pytest.raises(DatasetError, match="no class folder for 'bee'"):
        load_training_data(str(root), str(held), 0.2, 0, image_size=16)
    extra = write_image_folder(tmp_path / "val2", ("ant", "bee", "cow", "dog"), per_class=2)
    with pytest.raises(DatasetError, match="'dog'"):
        load_training_data(str(root), str(extra), 0.2, 0, image_size=16)


def test_empty_class_and_single_class_are_errors(tmp_path) -> None:
    root = write_image_folder(tmp_path / "d", ("ant", "bee"), per_class=3)
    (root / "cow").mkdir()
    with pytest.raises(DatasetError, match="cow"):
        load_training_data(str(root), None, 0.2, 0, image_size=16)
    single = write_image_folder(tmp_path / "s", ("ant",), per_class=3)
    with pytest.raises(DatasetError, match="at least 2"):
        load_training_data(str(single), None, 0.2, 0, image_size=16)


def test_cifar10_folder(tmp_path) -> None:
    write_cifar10(tmp_path)
    data = load_training_data(f"cifar10:{tmp_path}", None, 0.25, 0, image_size=32)
    assert data.classes == [f"class{i}" for i in range(10)]
    assert len(data.train) + len(data.val) == 40 and len(data.val) == 10
    image = data.train.items[0].image
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    # the pixels are CIFAR's channel-planar rows turned into an RGB image
    raw = read_batch(tmp_path / "cifar-10-batches-py" / "data_batch_1")
    first = np.asarray(raw["data"][0]).reshape(3, 32, 32).transpose(1, 2, 0)
    split = data.train if "cifar10-train-00000" in data.train.ids() else data.val
    sample = split.items[split.ids().index("cifar10-train-00000")]
    np.testing.assert_array_equal(sample.image, first)
    assert sample.class_ids == (raw["labels"][0],)
    inner = load_training_data(
        f"cifar10:{tmp_path / 'cifar-10-batches-py'}", None, 0.25, 0, image_size=32
    )
    assert len(inner.train) == len(data.train)
    with pytest.raises(UsageError, match="coarse"):
        load_training_data(f"cifar10:{tmp_path}", None, 0.25, 0, image_size=32, labels="coarse")


def test_cifar100_coarse_labels_and_test_batch(tmp_path) -> None:
    write_cifar100(tmp_path)
    data = load_training_data(f"cifar100:{tmp_path}", None, 0.5, 0, image_size=32, labels="coarse")
    assert len(data.classes) == 20 and data.classes[3] == "coarse3"
    assert sorted(set(labels_of(data.train))) == list(range(20))
    # the test batch of this tiny set holds 20 of the 100 fine classes: a class missing from
    # validation is an error that names it
    with pytest.raises(DatasetError, match="no image of 'fine0'"):
        load_training_data(f"cifar100:{tmp_path}", "test", 0.1, 0, image_size=32)


def test_cifar_missing_folder_and_hostile_pickle(tmp_path) -> None:
    with pytest.raises(DatasetError, match="--download"):
        load_training_data(f"cifar10:{tmp_path}", None, 0.1, 0, image_size=32)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({"label_names": Evil()}, handle)
    with pytest.raises(DatasetError, match="not a CIFAR batch"):
        load_training_data(f"cifar10:{tmp_path}", None, 0.1, 0, image_size=32)


def test_builtin_set_is_one_object_per_image_with_boxes() -> None:
    data = load_training_data("builtin:24", None, 0.25, 0, image_size=32)
    assert data.classes == ["cat", "cup", "motorcycle", "rocket"]
    assert len(data.train) + len(data.val) == 24
    assert sorted(set(labels_of(data.val))) == [0, 1, 2, 3]
    assert all(len(s.objects) == 1 and len(s.boxes) == 1 for s in data.val.items)
    x0, y0, x1, y1 = data.val.items[0].boxes[0]
    assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
    assert data.details["generator_seed"] == 0 and data.details["stream"] == "train"
    with pytest.raises(UsageError, match="builtin:N"):
        load_training_data("builtin:many", None, 0.25, 0, image_size=32)


def test_training_never_sees_the_images_evaluate_scores_by_default() -> None:
    # one default seed (0) for every command; train reads the generator's training stream, so
    # `evaluate --data builtin:N` (the evaluation stream) scores images no run trained on
    data = load_training_data("builtin:24", None, 0.25, 0, image_size=32)
    scored = read_data("builtin:24", [], size=32)
    trained = {s.image.tobytes() for split in (data.train, data.val) for s in split.items}
    assert not trained & {np.asarray(s.image).tobytes() for s in scored.items}
    assert not set(data.train.ids() + data.val.ids()) & set(scored.ids())
    # the same seed given explicitly is the same training stream
    again = load_training_data("builtin:24:0", None, 0.25, 0, image_size=32)
    assert again.train.ids() == data.train.ids()


def test_download_asks_torchvision_and_an_offline_failure_says_where_to_fetch(
    tmp_path, monkeypatch
) -> None:
    import torchvision.datasets as tvd

    calls = []

    class FakeCIFAR100:  # what torchvision's class does on a connected machine: write the folder
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            write_cifar100(Path(root))

    monkeypatch.setattr(tvd, "CIFAR100", FakeCIFAR100)
    data = load_training_data(
        f"cifar100:{tmp_path}", None, 0.25, 0, image_size=32, labels="coarse", download=True
    )
    assert calls == [(str(tmp_path), True, True)]
    assert data.classes == [f"coarse{i}" for i in range(20)]
    assert len(data.train) + len(data.val) == 40
    load_training_data(
        f"cifar100:{tmp_path}", None, 0.25, 0, image_size=32, labels="coarse", download=True
    )
    assert len(calls) == 1  # there now: not fetched again

    class Offline:
        def __init__(self, **_: object) -> None:
            raise OSError("network unreachable")

    monkeypatch.setattr(tvd, "CIFAR10", Offline)
    with pytest.raises(DatasetError, match=r"network unreachable.*cifar-10-python\.tar\.gz"):
        load_training_data(f"cifar10:{tmp_path}", None, 0.1, 0, image_size=32, download=True)


def test_annotations_are_refused_with_what_to_train_on_instead(tmp_path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "boxes.csv").write_text("a.png,cat,0,0,4,4\n")
    with pytest.raises(DatasetError, match="pass class folders, a list with a label column"):
        load_training_data(str(tmp_path), None, 0.5, 0, image_size=16)
