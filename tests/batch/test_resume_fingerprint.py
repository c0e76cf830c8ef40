"""A resumed data-set job never mixes two models' or two files' rows (issue 21, item 1).

The job records the digest of the model's tensors and each input's source, size and modification
time; a resume with other weights (a replaced ``--weights`` file, a replaced ``model.safetensors``
of a run folder) is refused, and so is one whose committed inputs changed, unless
``--refresh-changed`` asks to explain exactly those again (their old rows are removed first).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from image_folders import MODEL, make_images
from PIL import Image
from safetensors.torch import load_file, save_file
from tiny_data import tiny_run

from camscope import explain, io
from camscope.batch import DatasetJob, ModelRecipe, open_maps, run_dataset_job
from camscope.cli import main as cli
from camscope.errors import UsageError
from camscope.models import load_model


def job(source: Path, out: Path, **options: object) -> DatasetJob:
    base: dict[str, object] = {
        "model": ModelRecipe(MODEL),
        "methods": ("gradcam",),
        "batch_size": 2,
        "shard_size": 2,
        "decode_workers": 0,
    }
    base.update(options)
    return DatasetJob(source, out, **base)  # type: ignore[arg-type]


def rows_per_id(out: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for shard in sorted(out.glob("maps-*.parquet")):
        counts.update(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    return counts


def replace_image(path: Path, seed: int) -> None:
    """Another picture under the same name (another size, a later modification time)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (41, 57, 3), dtype=np.uint8)).save(path)
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))


def add_image(path: Path) -> None:
    """A new input for a resume to do."""
    Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(path)


def test_a_replaced_weights_file_cannot_resume(tmp_path: Path) -> None:
    images, weights = tmp_path / "images", tmp_path / "w.safetensors"
    make_images(images, 4)
    model, _ = load_model(MODEL)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    recipe = ModelRecipe(MODEL, weights=str(weights))
    run_dataset_job(job(images, tmp_path / "out", model=recipe))
    state = load_file(str(weights))
    save_file({k: v * -1.5 for k, v in state.items()}, str(weights))  # same path, other model
    add_image(images / "new.png")
    with pytest.raises(UsageError, match=r"weights_sha256.*the model's weights changed"):
        run_dataset_job(job(images, tmp_path / "out", model=recipe, resume=True))
    assert rows_per_id(tmp_path / "out") == dict.fromkeys(rows_per_id(tmp_path / "out"), 1)
    assert len(rows_per_id(tmp_path / "out")) == 4  # nothing of the other model was added


def test_a_run_folder_whose_model_was_replaced_cannot_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tiny_run(tmp_path / "run")
    images, out = tmp_path / "images", tmp_path / "out"
    make_images(images, 6)
    args = ["explain", str(images), "--format", "parquet", "--out", str(out), "--model", str(run)]
    args += ["--decode-workers", "0"]
    assert cli.main(args) == 0
    state = load_file(str(run / "model.safetensors"))
    save_file({k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()},
              str(run / "model.safetensors"))  # fmt: skip
    add_image(images / "new.png")
    capsys.readouterr()
    assert cli.main([*args, "--resume"]) == 2
    assert "the model's weights changed" in capsys.readouterr().err
    assert sum(rows_per_id(out).values()) == 6


def test_a_replaced_input_is_refused_then_refreshed_exactly_once(tmp_path: Path) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    ids = make_images(images, 5)
    run_dataset_job(job(images, out))
    replace_image(images / ids[2], seed=1)
    with pytest.raises(
        UsageError, match=rf"1 committed input\(s\) changed.*{ids[2]}.*file changed"
    ):
        run_dataset_job(job(images, out, resume=True))
    with pytest.raises(UsageError, match="needs --resume"):
        run_dataset_job(job(images, out, refresh_changed=True))
    again = run_dataset_job(job(images, out, resume=True, refresh_changed=True))
    assert again.summary["this_run"]["refreshed"] == 1
    assert again.summary["this_run"]["inputs"] == 1  # exactly the changed input
    assert again.summary["counts"]["explained"] == 5
    assert rows_per_id(out) == dict.fromkeys(ids, 1)  # its old row is gone
    # Its one row is the new picture's map.
    model, spec = load_model(MODEL)
    x = io.preprocess(io.load_image(images / ids[2]), spec)
    expected = explain(model, x, ["gradcam"], "auto").raw["gradcam"][0].numpy()
    record = open_maps(out).get(ids[2])
    np.testing.assert_allclose(record.map, expected, atol=np.abs(expected).max() * 2.0**-11)
    assert (record.width, record.height) == (57, 41)
    # Nothing changed since: a plain resume goes through and does nothing.
    assert run_dataset_job(job(images, out, resume=True)).summary["this_run"]["inputs"] == 0


def test_a_list_row_pointed_at_another_file_is_a_change(tmp_path: Path) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    ids = make_images(images, 3)
    shutil.copy(images / ids[0], images / "other.png")
    listing = tmp_path / "list.csv"
    listing.write_text("id,path\n" + "".join(f"k{i},{images / n}\n" for i, n in enumerate(ids)))
    run_dataset_job(job(listing, out))
    listing.write_text(listing.read_text().replace(str(images / ids[1]), str(images / "other.png")))
    with pytest.raises(UsageError, match=r"k1 \(now read from .*other.png, was .*"):
        run_dataset_job(job(listing, out, resume=True))
    run_dataset_job(job(listing, out, resume=True, refresh_changed=True))
    maps = open_maps(out)
    assert maps.source("k1") == str(images / "other.png")
    assert rows_per_id(out) == {"k0": 1, "k1": 1, "k2": 1}


def test_counts_are_of_the_inputs_listed_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    ids = make_images(images, 4)
    listing = tmp_path / "list.csv"  # no id column: the path is the id
    listing.write_text("path\n" + "".join(f"{images / n}\n" for n in ids))
    args = ["explain", str(listing), "--format", "parquet", "--out", str(out), "--model", MODEL]
    args += ["--decode-workers", "0"]
    assert cli.main(args) == 0
    os.rename(images / ids[3], images / "moved.png")  # the row now names another path, another id
    listing.write_text(listing.read_text().replace(ids[3], "moved.png"))
    capsys.readouterr()
    assert cli.main([*args, "--resume"]) == 0
    report = capsys.readouterr().out
    assert "explained 4 of 4 input(s)" in report  # not "5 of 4"
    assert "1 id(s) no longer in the input keep their rows" in report


def test_the_command_refuses_a_changed_input_and_refreshes_it_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = tmp_path / "images", tmp_path / "out"
    ids = make_images(images, 3)
    args = ["explain", str(images), "--format", "parquet", "--out", str(out), "--model", MODEL]
    args += ["--decode-workers", "0"]
    assert cli.main(args) == 0
    replace_image(images / ids[1], seed=2)
    capsys.readouterr()
    assert cli.main([*args, "--resume"]) == 2
    assert f"{ids[1]} (the file changed" in capsys.readouterr().err
    assert cli.main([*args, "--refresh-changed"]) == 2
    assert "--refresh-changed needs --resume" in capsys.readouterr().err
    assert cli.main([*args, "--resume", "--refresh-changed"]) == 0
    said = capsys.readouterr().out
    assert "explained 3 of 3 input(s)" in said and "1 changed input(s) explained again" in said
    assert rows_per_id(out) == dict.fromkeys(ids, 1)
