"""The one data-spec grammar and what read_data makes of each kind: one default seed for the
built-in set, lists with labels, CIFAR, what a command that needs boxes refuses, lazy samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from tiny_data import write_cifar10

from camscope.data.dataset import LazySamples, Sample, sample_ids, take
from camscope.data.lists import ArrowSamples
from camscope.data.read import read_data
from camscope.data.spec import DataOptions, DataSpec, is_builtin, parse_data
from camscope.errors import DatasetError, UsageError


def picture(path: Path, size: tuple[int, int] = (10, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_the_grammar(tmp_path: Path) -> None:
    assert parse_data("builtin") == DataSpec("builtin", "builtin", None, 50, None)
    assert parse_data(" builtin:7 ") == DataSpec("builtin", "builtin:7", None, 7, None)
    assert parse_data("builtin:7:3") == DataSpec("builtin", "builtin:7:3", None, 7, 3)
    assert is_builtin("builtin:7:3") and not is_builtin("builtin_mine")
    assert parse_data(f"cifar100:{tmp_path}") == DataSpec(
        "cifar100", f"cifar100:{tmp_path}", tmp_path
    )
    (tmp_path / "list.csv").write_text("id,path,label\n1,a.png,cat\n")
    (tmp_path / "boxes.csv").write_text("a.png,cat,0,0,4,4\n")
    (tmp_path / "list.parquet").write_bytes(b"")
    assert parse_data(str(tmp_path / "list.csv")).kind == "list"
    assert parse_data(str(tmp_path / "list.parquet")).kind == "list"
    assert parse_data(str(tmp_path / "boxes.csv")).kind == "annotations"
    assert parse_data(str(tmp_path)).kind == "folder"
    for bad, error, message in [
        ("builtin:x", UsageError, "builtin:N or builtin:N:SEED"),
        ("builtin:1:2:3", UsageError, "whole numbers"),
        ("  ", UsageError, "empty"),
        (str(tmp_path / "none"), DatasetError, "does not exist"),
    ]:
        with pytest.raises(error, match=message):
            parse_data(bad)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="neither a folder nor a list"):
        parse_data(str(tmp_path / "notes.txt"))


def test_one_default_seed_and_a_seed_in_the_spec() -> None:
    default = read_data("builtin:3", [], size=32)
    assert default.ids() == [f"builtin-0-{i:06d}" for i in range(3)]
    assert read_data("builtin:3", [], size=32, seed=4).ids()[0] == "builtin-4-000000"
    named = read_data("builtin:3:5", [], size=32, seed=4)  # the spec's seed wins
    assert named.ids()[0] == "builtin-5-000000" and named.details["generator_seed"] == 5
    a, b = default.items[1].image, read_data("builtin:2", [], size=32).items[1].image
    assert np.array_equal(np.asarray(a), np.asarray(b))  # image i does not depend on N


def test_a_list_with_labels_maps_them_and_refuses_unknown_ones(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        picture(tmp_path / f"{name}.png")
    listing = tmp_path / "list.parquet"
    pq.write_table(
        pa.table({"path": ["a.png", "b.png", "c.png"], "label": ["tabby", "yak", "tabby"]}),
        listing,
    )
    with pytest.raises(DatasetError, match="'yak'"):
        read_data(str(listing), [])
    data = read_data(str(listing), [], DataOptions(unmapped="skip"))
    assert isinstance(data.items, ArrowSamples) and data.classes == ["tabby"]
    assert [(s.id, s.label, s.class_ids) for s in data.items] == [
        ("a.png", "tabby", (281,)),
        ("c.png", "tabby", (281,)),
    ]
    assert "skipped 1 image(s)" in data.notes[0] and "yak" in data.notes[0]
    own = read_data(str(listing), None)  # no model yet (train): the labels are the classes
    assert own.classes == ["tabby", "yak"] and [s.class_ids for s in own.items] == [
        (0,),
        (1,),
        (0,),
    ]
    (tmp_path / "plain.csv").write_text("path\na.png\n")
    with pytest.raises(DatasetError, match="no 'label' column"):
        read_data(str(tmp_path / "plain.csv"), [])


def test_cifar_is_labelled_data_too(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    data = read_data(f"cifar10:{tmp_path}", None)
    assert data.kind == "cifar10" and len(data.classes) == 10
    first = data.items[0]
    assert first.image.shape == (32, 32, 3) and first.class_ids == (
        data.classes.index(first.label),
    )


def test_what_a_command_needs_decides_what_a_folder_is(tmp_path: Path) -> None:
    picture(tmp_path / "cats" / "a.png")
    picture(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match="no annotations found"):
        read_data(str(tmp_path), [], need="boxes")  # evaluate: boxes or nothing
    with pytest.raises(DatasetError, match="needs object boxes"):
        read_data(f"cifar10:{tmp_path}", [], need="boxes")
    images = read_data(str(tmp_path), [], need="images")  # every image below, unlabelled
    assert images.ids() == ["cats/a.png", "loose.png"] and images.items[0].label is None
    folders = read_data(str(tmp_path), ["tabby", "cats"])  # class folders
    assert folders.ids() == ["cats/a.png"] and folders.items[0].class_ids == (1,)
    with pytest.raises(UsageError, match="need must be"):
        read_data(str(tmp_path), [], need="pixels")


def test_lazy_samples_are_built_when_indexed_and_taken_without_building() -> None:
    built: list[int] = []

    def make(i: int) -> Sample:
        built.append(i)
        return Sample(f"s{i}", f"s{i}")

    samples = LazySamples(make, [f"s{i}" for i in range(6)])
    picked = take(samples[1:], [0, 2, 4])
    assert sample_ids(picked) == ["s1", "s3", "s5"] and built == []
    assert [s.id for s in picked] == ["s1", "s3", "s5"] and built == [1, 3, 5]
    assert sample_ids([Sample("x", "x")]) == ["x"] and take([Sample("x", "x")], [0])[0].id == "x"
