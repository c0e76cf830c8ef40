"""The Ray backend on a real local Ray instance: the same rows as the local backend (same ids,
maps equal within float16), failures in errors.parquet, and a resume that finishes a job the
local backend started."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from image_folders import BROKEN, GOOD, MODEL

from camscope.batch import DatasetJob, ModelRecipe, RayOptions, open_maps, run_dataset_job
from camscope.batch import parquet as store
from camscope.errors import UnsupportedModelError
from camscope.models import load_model

METHODS = ("gradcam", "gradcam++")


def job(source: Path, out: Path, backend: str, **options: Any) -> DatasetJob:
    return DatasetJob(
        source,
        out,
        model=options.pop("model", ModelRecipe(MODEL, device="cpu")),
        methods=METHODS,
        batch_size=4,
        shard_size=4,
        decode_workers=1,
        save_boxes=True,
        backend=backend,
        ray=RayOptions(num_workers=1),
        **options,
    )


def sorted_rows(out: Path) -> list[dict[str, Any]]:
    table = pq.read_table(sorted(out.glob("maps-*.parquet")))
    keys = pc.sort_indices(table, [("id", "ascending"), ("method", "ascending")])
    return table.take(keys).to_pylist()


@pytest.mark.slow
def test_ray_and_local_backends_write_the_same_rows(
    ray_local: Any, image_folder: Path, tmp_path: Path
) -> None:
    local = run_dataset_job(job(image_folder, tmp_path / "local", "local"))
    on_ray = run_dataset_job(job(image_folder, tmp_path / "ray", "ray"))
    assert on_ray.summary["backend"] == "ray" and ray_local.is_initialized()  # ours, still up
    assert on_ray.summary["counts"] == local.summary["counts"]
    assert on_ray.exit_code == local.exit_code == 1
    a, b = sorted_rows(tmp_path / "local"), sorted_rows(tmp_path / "ray")
    assert [(r["id"], r["method"]) for r in a] == [(r["id"], r["method"]) for r in b]
    assert len(a) == GOOD * len(METHODS)
    for x, y in zip(a, b):
        for key in ("width", "height", "layer", "target", "label", "rank", "map_shape", "box"):
            assert x[key] == y[key], (x["id"], key)
        assert x["probability"] == pytest.approx(y["probability"], abs=1e-6)
        raw_x = np.asarray(x["map"], np.float32) * x["map_scale"]
        raw_y = np.asarray(y["map"], np.float32) * y["map_scale"]
        np.testing.assert_allclose(raw_x, raw_y, atol=2.0**-10 * np.abs(raw_x).max(), rtol=0)
    errors = pq.read_table(tmp_path / "ray" / "errors.parquet").column("id").to_pylist()
    assert sorted(errors) == sorted(BROKEN)


@pytest.mark.slow
def test_the_actors_run_the_jobs_precision(
    ray_local: Any, image_folder: Path, tmp_path: Path
) -> None:
    # bf16 rows differ from float32 ones by far more than float16 storage: equal rows on both
    # backends mean the actors ran the forward in bf16 too
    local = run_dataset_job(job(image_folder, tmp_path / "local", "local", precision="bf16"))
    on_ray = run_dataset_job(job(image_folder, tmp_path / "ray", "ray", precision="bf16"))
    run_dataset_job(job(image_folder, tmp_path / "fp32", "local"))
    assert on_ray.summary["this_run"]["precision"] == "bf16"
    a, b, c = (sorted_rows(tmp_path / n) for n in ("local", "ray", "fp32"))
    differs = 0
    for x, y, z in zip(a, b, c):
        raw = [np.asarray(r["map"], np.float32) * r["map_scale"] for r in (x, y, z)]
        tolerance = 2.0**-10 * np.abs(raw[0]).max()
        np.testing.assert_allclose(raw[0], raw[1], atol=tolerance, rtol=0)
        differs += x["target"] != z["target"] or np.abs(raw[0] - raw[2]).max() > tolerance
    assert differs > 0 and local.summary["counts"] == on_ray.summary["counts"]


@pytest.mark.slow
def test_ray_resumes_a_job_the_local_backend_began(
    ray_local: Any, image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # The spec the CLI's preprocessing overrides give travels to the actors: 48 px inputs
    _, spec = load_model(MODEL)
    model = ModelRecipe(MODEL, device="cpu", spec=replace(spec, input_size=(48, 48)))
    listing = tmp_path / "list.csv"
    names = sorted(p.relative_to(image_folder).as_posix() for p in image_folder.rglob("img*"))
    listing.write_text("path\n" + "".join(f"{image_folder / n}\n" for n in names[:4]))
    run_dataset_job(job(listing, out, "local", model=model))
    listing.write_text("path\n" + "".join(f"{image_folder / n}\n" for n in names))
    with pytest.raises(Exception, match="settings differ"):
        run_dataset_job(job(listing, out, "ray", resume=True, map_size=(4, 4), model=model))
    result = run_dataset_job(job(listing, out, "ray", resume=True, model=model))
    assert result.summary["this_run"]["skipped_as_committed"] == 4
    assert result.summary["this_run"]["inputs"] == len(names) - 4
    maps = open_maps(out)
    assert sorted(maps.ids()) == sorted(str(image_folder / n) for n in names)
    assert len(store.commit_files(out)) == 1 + 2  # 4 inputs, then 5 more in shards of 4
    shapes = pq.read_table(sorted(out.glob("maps-*.parquet"))).column("map_shape").to_pylist()
    assert {tuple(s) for s in shapes} == {(24, 24)}  # layer '3' halves 48 px on both backends


@pytest.mark.slow
def test_an_actors_camscope_error_stops_the_job_with_its_own_message(
    ray_local: Any, image_folder: Path, tmp_path: Path
) -> None:
    # explain(strict=True) in the actor: CAM cannot run at a layer of 8 channels (classifier: 12)
    failing = job(image_folder, tmp_path, "ray", layers=("1",))
    failing = DatasetJob(**{**failing.__dict__, "methods": ("gradcam", "cam")})
    with pytest.raises(UnsupportedModelError, match="classifier expects 12"):
        run_dataset_job(failing)
    assert not list(tmp_path.glob("maps-*.parquet"))
