"""Lists of images as Arrow columns (the data-set job's inputs): folders, CSV and Parquet lists,
labels, and their mistakes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from image_folders import GOOD, add_broken_files, make_images

from camscope.data.lists import list_images
from camscope.errors import DatasetError


def test_a_folder_lists_every_image_below_it_with_relative_ids(tmp_path: Path) -> None:
    image_folder = tmp_path / "images"
    image_folder.mkdir()
    make_images(image_folder, GOOD)
    add_broken_files(image_folder)
    inputs = list_images(image_folder)
    ids = inputs.ids()
    assert inputs.kind == "folder" and inputs.root == str(image_folder.resolve())
    assert len(ids) == GOOD + 3 and ids == inputs.items.id_column.to_pylist()
    assert "a/img001.jpg" in ids and "b/img000.png" in ids and "notes.jpg" in ids
    assert ids == sorted(ids, key=lambda i: str(image_folder / i))  # collect_inputs' order
    for id_, source in zip(ids, inputs.items.source_column.to_pylist()):
        assert source == str(image_folder.resolve() / id_)
    assert [s.source for s in inputs.items[:2]] == [
        str(image_folder.resolve() / i) for i in ids[:2]
    ]


def test_a_csv_list_keeps_ids_as_text_and_resolves_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "images.csv"
    listing.write_text(
        "\ufeffid,path,split\n007,../x/cat.jpg,train\n8,/abs/dog.png,val\n9,https://h/e.jpg,val\n"
    )
    inputs = list_images(listing)
    assert inputs.kind == "csv"
    assert inputs.ids() == ["007", "8", "9"]
    assert [s.source for s in inputs.items] == [
        str(tmp_path / "lists" / "../x/cat.jpg"),
        "/abs/dog.png",
        "https://h/e.jpg",
    ]


def test_a_parquet_list_without_ids_uses_the_paths(tmp_path: Path) -> None:
    listing = tmp_path / "list.parquet"
    pq.write_table(pa.table({"path": ["a.jpg", "b/c.png"]}), listing)
    inputs = list_images(listing)
    assert inputs.ids() == ["a.jpg", "b/c.png"]
    assert [s.source for s in inputs.items] == [str(tmp_path / "a.jpg"), str(tmp_path / "b/c.png")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,file\n1,a.jpg\n", "no 'path' column"),
        ("id,path\n1,a.jpg\n1,b.jpg\n", "appear more than once ('1')"),
        ("id,path\n1,a.jpg\n2,\n", "empty 'path' (the first is data row 2)"),
        ("path\n", "lists no images"),
    ],
)
def test_list_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(text)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list_images(listing)


def test_missing_inputs_and_other_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "list.txt").write_text("a.jpg\n")
    with pytest.raises(DatasetError, match=r"neither a folder nor a list"):
        list_images(tmp_path / "list.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images in"):
        list_images(tmp_path / "empty")
