"""docs/scale.md's reading example runs with what ``camscope[batch]`` installs (issue 21,
item 12): it called ``.to_pandas()``, and pandas is not in the extra."""

from __future__ import annotations

import builtins
import re
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from image_folders import MODEL, make_images

from camscope.batch import DatasetJob, ModelRecipe, open_maps, run_dataset_job

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scale.md"


def _reading_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    found = [b for b in blocks if "maps-*.parquet" in b]
    assert len(found) == 1, "docs/scale.md should hold one reading example"
    return found[0]


def test_the_reading_example_needs_no_pandas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    make_images(images, 3, seed=2)
    job = DatasetJob(images, tmp_path / "out" / "maps", model=ModelRecipe(MODEL), batch_size=4)
    assert run_dataset_job(job).exit_code == 0
    real_import = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("No module named 'pandas' (camscope[batch] lacks it)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "read.py"
    script.write_text(_reading_example())
    result = runpy.run_path(str(script))
    monkeypatch.undo()
    row, heat = result["row"], result["heat"]
    assert row["method"] == "gradcam"
    # the example's reconstruction is open_maps' own
    expected = open_maps(tmp_path / "out" / "maps").map(row["id"], method="gradcam")
    np.testing.assert_allclose(heat, expected, rtol=0, atol=1e-6)
    assert row["id"] in capsys.readouterr().out
