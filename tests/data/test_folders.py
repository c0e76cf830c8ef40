from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from camscope.data.folders import scan_class_folders
from camscope.errors import DatasetError


def _write(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path)


def test_classes_are_sorted_folder_names_and_files_are_found_recursively(tmp_path: Path) -> None:
    for rel in ("dog/b.png", "cat/z.JPG", "cat/sub/a.png", "dog/notes.txt"):
        if rel.endswith(".txt"):
            (tmp_path / rel).write_text("x")
        else:
            _write(tmp_path / rel)
    data = scan_class_folders(tmp_path)
    assert data.classes == ["cat", "dog"]
    assert [(s.id, s.source, s.label) for s in data.items] == [
        ("cat/sub/a.png", str(tmp_path / "cat/sub/a.png"), "cat"),
        ("cat/z.JPG", str(tmp_path / "cat/z.JPG"), "cat"),
        ("dog/b.png", str(tmp_path / "dog/b.png"), "dog"),
    ]
    assert [s.stem for s in data.items] == ["a", "z", "b"]


def test_empty_class_folder_is_left_out_and_named(tmp_path: Path) -> None:
    # training refuses it (tests/training/test_training_data.py), the other commands go on
    (tmp_path / "bird").mkdir()
    with pytest.raises(DatasetError, match=r"no class folder with images \(bird hold no images"):
        scan_class_folders(tmp_path)
    _write(tmp_path / "cat" / "a.png")
    _write(tmp_path / "dog" / "a.png")
    data = scan_class_folders(tmp_path)
    assert data.classes == ["cat", "dog"]
    assert data.skipped == [("bird", "class folder without images")]


def test_too_few_classes_and_loose_images_say_what_to_do(tmp_path: Path) -> None:
    _write(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="one subfolder per class"):
        scan_class_folders(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        scan_class_folders(tmp_path / "missing")
