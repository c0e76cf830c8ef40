"""Ids that clean to the same file name get their own overlays (issue 21, item 2): ``a b``,
``a_b`` and ``a:b`` become ``a_b``, ``a_b-2``, ``a_b-3`` in ``--save-png`` and in
``camscope maps export``, the same names in a resumed job, with an id -> file table."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from image_folders import MODEL
from PIL import Image

from camscope.batch import DatasetJob, ModelRecipe, run_dataset_job
from camscope.cli import main as cli

IDS = ("a b", "a_b", "a:b")


def job(listing: Path, out: Path, **options: object) -> DatasetJob:
    settings: dict[str, object] = {"model": ModelRecipe(MODEL), "batch_size": 2, "shard_size": 2}
    settings.update({"decode_workers": 0, "save_png": True, **options})
    return DatasetJob(listing, out, **settings)  # type: ignore[arg-type]


def write_list(folder: Path, ids: list[str]) -> Path:
    """One image per id (written once), each of its own width (so a picture tells whose it is)."""
    folder.mkdir(exist_ok=True)
    rows = []
    for id_ in ids:
        path = folder / f"{sum(map(ord, id_))}-{len(id_)}.png"
        if not path.exists():
            pixels = np.full((24, width_of(id_), 3), sum(map(ord, id_)) % 256, np.uint8)
            Image.fromarray(pixels).save(path)
        rows.append((id_, str(path)))
    listing = folder / "list.csv"
    with listing.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path"])
        writer.writerows(rows)
    return listing


def width_of(id_: str) -> int:
    return 20 + 3 * len(id_) + sum(map(ord, id_)) % 17


def png_column(out: Path) -> dict[str, str]:
    table = pq.read_table(sorted(out.glob("maps-*.parquet")), columns=["id", "png"])
    return dict(zip(table.column("id").to_pylist(), table.column("png").to_pylist()))


def test_save_png_gives_each_id_its_own_overlay_and_keeps_the_names_on_resume(
    tmp_path: Path,
) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    listing = write_list(images, list(IDS))
    run_dataset_job(job(listing, out))
    assert len(list((out / "png").iterdir())) == len(IDS)  # not one picture for all three
    names = png_column(out)
    assert names == {"a b": "a_b.gradcam.png", "a_b": "a_b-2.gradcam.png",
                     "a:b": "a_b-3.gradcam.png"}  # fmt: skip
    for id_, name in names.items():  # each picture is its own image's overlay
        assert Image.open(out / "png" / name).width == width_of(id_)
    # A resume with a new id that cleans to the same name, listed first: the names stay.
    listing = write_list(images, ["A B", *IDS])
    run_dataset_job(job(listing, out, resume=True))
    again = png_column(out)
    assert {k: again[k] for k in IDS} == names
    assert again["A B"] == "A_B-4.gradcam.png"
    assert Image.open(out / "png" / again["A B"]).width == width_of("A B")
    assert sorted(p.name for p in (out / "png").iterdir()) == sorted(again.values())


def test_maps_export_writes_one_file_per_id_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    run_dataset_job(job(write_list(images, list(IDS)), out, save_png=False))
    export = tmp_path / "export"
    args = ["maps", "export", str(out), "--png", "--out", str(export), "--ids", *IDS, "a b"]
    capsys.readouterr()
    assert cli.main(args) == 0
    assert "wrote 3 file(s) for 3 of 3 id(s)" in capsys.readouterr().out
    with (export / "index.csv").open(newline="") as handle:
        index = {row["id"]: row["file"] for row in csv.DictReader(handle)}
    assert index == {"a b": "a_b.gradcam.png", "a_b": "a_b-2.gradcam.png",
                     "a:b": "a_b-3.gradcam.png"}  # fmt: skip
    for id_, name in index.items():
        assert Image.open(export / name).width == width_of(id_)
    assert cli.main(args) == 0  # again: the same files, said to be replaced
    assert "wrote 3 file(s) for 3 of 3 id(s)" in (said := capsys.readouterr().out)
    assert "3 of them replaced the files of an earlier export" in said
    assert len((export / "index.csv").read_text().splitlines()) == 4  # header + 3, no repeats
