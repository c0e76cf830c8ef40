"""camscope.pictures.run: the picture job of ``camscope explain`` for library callers: the methods
under the pass budget, and an interruption (Ctrl-C) that keeps what was finished (issue 21 #12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn

from camscope.data.inputs import open_images
from camscope.data.progress import Progress
from camscope.errors import UsageError
from camscope.models import ModelSpec
from camscope.models.recipe import LoadedModel
from camscope.pictures.job import JobState
from camscope.pictures.plan import PictureOptions
from camscope.pictures.run import PictureJob, run_picture_job

SPEC = ModelSpec("net", input_size=(16, 16), class_names=["a", "b", "c"])


class Told:
    """A reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def input_failed(self, source: str, reason: str) -> None:
        self.lines.append(f"failed {source}: {reason}")

    def method_skipped(self, key: str, reason: str) -> None:
        self.lines.append(f"skipped {key}: {reason}")

    def warning(self, text: str) -> None:
        self.lines.append(f"warning {text}")

    def note(self, text: str) -> None:
        self.lines.append(f"note {text}")


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()  # fmt: skip


@pytest.fixture
def images(tmp_path: Path) -> list[Any]:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (20, 18), (40 * i, 90, 200 - 30 * i)).save(folder / f"img{i}.png")
    return list(open_images([str(folder)]).items)


def interrupt_after(images_done: int, progress: Progress) -> Any:
    """A forward hook that raises KeyboardInterrupt (a Ctrl-C) once ``images_done`` images are
    settled: in the middle of the next image's Score-CAM passes."""

    def hook(*_: Any) -> None:
        if progress.done >= images_done:
            raise KeyboardInterrupt

    return hook


@pytest.mark.parametrize("batch_size", [1, 2])
def test_an_interrupted_perturbation_run_keeps_the_finished_images(
    tmp_path: Path, images: list[Any], batch_size: int
) -> None:
    model, out = net(), tmp_path / "out"
    out.mkdir()
    progress = Progress(len(images), enabled=False)
    model[0].register_forward_hook(interrupt_after(2, progress))
    job = PictureJob(out, methods="scorecam", batch_size=batch_size)
    state = JobState()
    with pytest.raises(KeyboardInterrupt):
        run_picture_job(
            job, LoadedModel(model, SPEC, torch.device("cpu")), images, state, Told(), progress
        )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["methods"] == ["scorecam"]
    assert [r["stem"] for r in summary["images"]] == ["img0", "img1"]
    for record in summary["images"]:
        assert record["error"] is None and record["files"]
        assert all((out / name).is_file() for name in record["files"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["summary.json", *(f for r in summary["images"] for f in r["files"])]
    )
    assert len(state.records) == 2


def test_an_interrupt_from_the_methods_progress_callback(tmp_path: Path, images: list[Any]) -> None:
    """The perturbation methods' ``progress(done, total)`` is where a slow run spends its time."""
    model, out = net(), tmp_path / "out"
    out.mkdir()
    progress = Progress(len(images), enabled=False)
    calls: list[tuple[int, int]] = []

    def passes(done: int, total: int) -> None:
        calls.append((done, total))
        if progress.done >= 3:
            raise KeyboardInterrupt

    job = PictureJob(out, methods="sscam", method_options={"progress": passes, "num_samples": 2})
    with pytest.raises(KeyboardInterrupt):
        run_picture_job(
            job, LoadedModel(model, SPEC, torch.device("cpu")), images, JobState(), Told(), progress
        )
    summary = json.loads((out / "summary.json").read_text())
    assert [r["stem"] for r in summary["images"]] == ["img0", "img1", "img2"] and calls
    assert summary["interrupted"] is True and "progress" not in summary["method_options"]


def test_method_all_and_the_progress_of_slow_methods(
    tmp_path: Path, images: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    out = tmp_path / "out"
    out.mkdir()
    told, progress = Told(), Progress(len(images), enabled=True, every=1e9)
    seen: list[Any] = []
    from camscope.core import engine

    real = engine.explain

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["method_options"].get("progress"))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "explain", spy)
    job = PictureJob(out, methods="all", pass_budget=20, target="c")
    result = run_picture_job(
        job, LoadedModel(net(), SPEC, torch.device("cpu")), images[:1], JobState(), told, progress
    )
    # 6 channels: Score-CAM 7 passes, SS-CAM 35 x 6 + 1 = 211 (over 20), ViT-only methods left out
    assert "scorecam" in result.methods and "sscam" in result.left_out
    assert "over the budget of 20" in result.left_out["sscam"]
    assert f"note left out sscam: {result.left_out['sscam']}" in told.lines
    assert seen == [progress.passes]  # without a terminal: rate-limited lines of the job's bar
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"][0]["target"]["class"] == 2  # the class name was resolved
    assert summary["methods_left_out"] == result.left_out and summary["interrupted"] is False


@pytest.mark.parametrize(
    ("field", "value"), [("npy_size", "full"), ("class_scale", "each"), ("image_format", "gif")]
)
def test_picture_options_refuse_a_choice_they_do_not_have(field: str, value: str) -> None:
    with pytest.raises(UsageError, match=rf"PictureOptions\.{field} must be one of .*'{value}'"):
        PictureOptions(**{field: value})


def test_a_library_caller_may_spell_jpg_as_jpeg(tmp_path: Path, images: list[Any]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    job = PictureJob(out, methods="gradcam", pictures=PictureOptions(image_format="jpeg"))
    run_picture_job(
        job, LoadedModel(net(), SPEC, torch.device("cpu")), images[:1], JobState(), Told()
    )
    written = sorted(p.name for p in out.iterdir() if p.name != "summary.json")
    assert written and all(name.endswith(".jpg") for name in written)
    with Image.open(out / written[0]) as picture:
        assert picture.format == "JPEG"
