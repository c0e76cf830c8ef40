"""Reading maps back: lookups by id touch the id's row groups only, never the whole table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from image_folders import MODEL, make_images

from camscope.batch import DatasetJob, ModelRecipe, open_maps, run_dataset_job
from camscope.batch import parquet as store
from camscope.batch.maps import heatmap_of
from camscope.errors import UsageError


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """60 images in two shards of 30, written in row groups of 16 rows (256 in real jobs), so
    that a shard has several row groups and some ids sit at their edges."""
    images = tmp_path_factory.mktemp("many")
    ids = make_images(images, 60, seed=5)
    out = tmp_path_factory.mktemp("many-out")
    job = DatasetJob(
        images, out, model=ModelRecipe(MODEL), batch_size=8, shard_size=30, decode_workers=1
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "ROW_GROUP_ROWS", 16)
        assert run_dataset_job(job).exit_code == 0
    return out, ids


def test_lookups_read_only_the_row_groups_of_the_id(
    many: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, ids = many
    full = pq.read_table(sorted(out.glob("maps-*.parquet")))
    by_id = {row["id"]: row for row in full.to_pylist()}
    maps = open_maps(out)
    assert len(maps) == 60 and set(maps) == set(ids)
    groups: list[int] = []
    real = pq.ParquetFile.read_row_group

    def counted(self: pq.ParquetFile, i: int, *args: object, **kwargs: object) -> object:
        groups.append(i)
        return real(self, i, *args, **kwargs)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a lookup must not read whole files")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    monkeypatch.setattr(pq, "read_table", refuse)
    monkeypatch.setattr(pq.ParquetFile, "read", refuse)
    order = maps.ids()  # commit order: shard 0 holds rows 0..29 in groups 0..15 and 16..29
    for i, group in ((0, 0), (15, 0), (16, 1), (29, 1), (30, 0), (46, 1), (59, 1)):
        groups.clear()
        record = maps.get(order[i])
        assert groups == [group]
        id_ = order[i]
        expected = by_id[id_]
        stored = np.asarray(expected["map"], np.float32).reshape(expected["map_shape"])
        np.testing.assert_array_equal(record.map, stored * np.float32(expected["map_scale"]))
        assert (record.target, record.width, record.label) == (
            expected["target"],
            expected["width"],
            expected["label"],
        )


def test_the_index_matches_the_shards_and_the_full_table(many: tuple[Path, list[str]]) -> None:
    out, _ids = many
    maps = open_maps(out)
    assert [p.name for p in maps.shards()] == ["maps-00000.parquet", "maps-00001.parquet"]
    for path in maps.shards():
        assert pq.ParquetFile(path).num_row_groups == 2  # 30 rows in groups of 16
    table = maps.table(columns=["id", "method"])
    assert table.num_rows == 60 and table.column_names == ["id", "method"]
    assert maps.settings["methods"] == ["gradcam"] and maps.summary["counts"]["explained"] == 60


def test_unknown_and_failed_ids_are_named(image_folder: Path, tmp_path: Path) -> None:
    job = DatasetJob(image_folder, tmp_path, model=ModelRecipe(MODEL), decode_workers=0)
    run_dataset_job(job)
    maps = open_maps(tmp_path)
    with pytest.raises(UsageError, match=r"'notes.jpg' failed in the job: not an image"):
        maps.get("notes.jpg")
    with pytest.raises(UsageError, match=r"'nope.png' is not in .*ids are paths relative"):
        maps.get("nope.png")
    with pytest.raises(UsageError, match=r"no map for method='layercam'.*stored: \[\('gradcam'"):
        maps.get("img002.png", method="layercam")
    heat = heatmap_of(maps.get("img002.png"))
    assert heat.shape == (maps.get("img002.png").height, maps.get("img002.png").width)
    assert heat.min() == 0.0 and heat.max() == pytest.approx(1.0)


def test_a_folder_that_is_not_a_job_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        UsageError, match="is not the output of `camscope explain --format parquet`"
    ):
        open_maps(tmp_path)
    store.commits_dir(tmp_path).mkdir(parents=True)
    assert len(open_maps(tmp_path)) == 0
    assert open_maps(tmp_path).table().num_rows == 0


def test_rows_of_one_id_that_straddle_two_row_groups_are_read_whole(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 3)  # two rows per image: every other one straddles
    job = DatasetJob(
        image_folder,
        tmp_path,
        model=ModelRecipe(MODEL),
        methods=("gradcam", "xgradcam"),
        decode_workers=0,
    )
    run_dataset_job(job)
    maps = open_maps(tmp_path)
    full = pq.read_table(sorted(tmp_path.glob("maps-*.parquet"))).to_pylist()
    for id_ in maps.ids():
        expected = [(r["method"], r["map"]) for r in full if r["id"] == id_]
        rows = maps.rows(id_).to_pylist()
        assert [(r["method"], r["map"]) for r in rows] == expected
