"""``camscope explain`` files and failures: output folder problems, Ctrl-C, picture options,
skipped methods, names printed safely, one-channel models, DICOM inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import CLASS_NAMES, REPO, SPEC, make_image, patch_loader, run, tiny_model
from PIL import Image

from camscope import io
from camscope.models import ModelSpec


@pytest.fixture
def tiny(monkeypatch):
    model = tiny_model()
    return model, patch_loader(monkeypatch, model, SPEC)


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Output folder problems: exit 2 before any work, or one input fails and the rest goes on


def test_out_naming_a_file_is_a_usage_error_before_loading(tmp_path, capsys, tiny) -> None:
    _, calls = tiny
    img = make_image(tmp_path / "a.png")
    target = tmp_path / "results.txt"
    target.write_text("mine")
    code, _, err = run(capsys, "explain", str(img), "--out", str(target))
    assert code == 2 and "is a file, not a folder" in err and "internal error" not in err
    assert calls == []  # no model was loaded
    code, _, err = run(capsys, "explain", str(img), "--out", str(target / "sub"))
    assert code == 2 and "part of its path is a file" in err


def test_unwritable_out_is_a_usage_error(tmp_path, capsys, tiny) -> None:
    _, calls = tiny
    img = make_image(tmp_path / "a.png")
    code, _, err = run(capsys, "explain", str(img), "--out", "/sys")  # not writable, even as root
    assert code == 2 and "cannot write into the output folder '/sys'" in err
    assert "choose another --out" in err and calls == []


def test_a_folder_where_a_file_goes_fails_that_image_only(tmp_path, capsys, tiny) -> None:
    a = make_image(tmp_path / "a.png")
    b = make_image(tmp_path / "b.png", seed=1)
    out = tmp_path / "out"
    (out / "a.gradcam.png").mkdir(parents=True)
    code, _, err = run(capsys, "explain", str(a), str(b), "--out", str(out))
    assert code == 1 and "internal error" not in err
    assert "a.gradcam.png" in err and "a folder is in the way" in err
    records = {r["stem"]: r for r in summary(out)["images"]}
    assert "a.gradcam.png" in records["a"]["error"]
    assert records["b"]["error"] is None and (out / "b.grid.png").is_file()
    (out / "summary.json").unlink()
    (out / "summary.json").mkdir()
    code, _, err = run(capsys, "explain", str(b), "--out", str(out))
    assert code == 2 and "summary.json" in err and "is a folder" in err


_SLOW_MODEL = """
import time
import torch
from torch import nn
from camscope.models import ModelSpec


class Slow(nn.Module):
    # Explains a few images, then waits in its forward pass until the process is interrupted:
    # whatever the machine's load, the job cannot finish before the test's Ctrl-C.

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        while self.calls > 8:  # a dry run and a pass per image: the first images get through
            time.sleep(0.05)
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def make():
    torch.manual_seed(0)
    return Slow().eval(), ModelSpec("slow", input_size=(16, 16), class_names=["a", "b", "c"])
"""


@pytest.mark.slow
def test_ctrl_c_still_writes_the_summary(tmp_path) -> None:
    (tmp_path / "slowmodel.py").write_text(_SLOW_MODEL)
    images = [str(make_image(tmp_path / "in" / f"{i:02d}.png", (20, 16), i)) for i in range(40)]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{tmp_path}"}
    command = [sys.executable, "-m", "camscope", "explain", *images, "--model", "slowmodel:make"]
    process = subprocess.Popen(
        [*command, "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # a shell starts background jobs with SIGINT ignored, and the child would inherit that
        # (`make test &`): Ctrl-C is what this test is about, so the child gets its default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "01.grid.png").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr.decode()
    assert b"interrupted after" in stderr and b"Traceback" not in stderr
    data = summary(out)
    assert data["interrupted"] is True
    done = data["images"]
    assert 2 <= len(done) < 40
    for record in done:  # every listed file was written completely
        assert record["error"] is None
        for name in record["files"]:
            with Image.open(out / name) as picture:
                picture.load()


# ---------------------------------------------------------------------------------------------
# Pictures: display size, formats, what is written


def test_overlays_are_capped_at_max_side_unless_asked(tmp_path, capsys, tiny) -> None:
    img = make_image(tmp_path / "wide.png", size=(1500, 1000))
    out = tmp_path / "out"
    assert run(capsys, "explain", str(img), "--out", str(out))[0] == 0
    with Image.open(out / "wide.gradcam.png") as png:
        assert png.size == (1024, 683)
    assert summary(out)["images"][0]["display_size"] == [1024, 683]
    assert run(capsys, "explain", str(img), "--out", str(out), "--max-side", "0")[0] == 0
    with Image.open(out / "wide.gradcam.png") as png:
        assert png.size == (1500, 1000)


def test_picture_switches_and_formats(tmp_path, capsys, tiny) -> None:
    img = make_image(tmp_path / "cat.png", size=(40, 30))
    out = tmp_path / "o1"
    argv = ["explain", str(img), "-m", "gradcam,guided-backprop", "--out", str(out)]
    assert run(capsys, *argv, "--no-grid", "--image-format", "jpg")[0] == 0
    assert {p.name for p in out.iterdir()} == {
        "cat.gradcam.jpg",
        "cat.guided-backprop.jpg",
        "summary.json",
    }
    with Image.open(out / "cat.gradcam.jpg") as picture:
        assert picture.format == "JPEG"
    out = tmp_path / "o2"
    argv[-1] = str(out)
    assert run(capsys, *argv, "--no-overlays", "--image-format", "webp")[0] == 0
    assert {p.name for p in out.iterdir()} == {"cat.grid.webp", "summary.json"}
    with Image.open(out / "cat.grid.webp") as picture:
        assert picture.format == "WEBP"


@pytest.mark.parametrize(
    ("size", "shape"), [("layer", (16, 16)), ("model", (32, 32)), ("image", (30, 40))]
)
def test_npy_sizes(tmp_path, capsys, tiny, size, shape) -> None:
    model, _ = tiny
    img = make_image(tmp_path / "cat.png", size=(40, 30))
    out = tmp_path / "out"
    argv = ["explain", str(img), "--out", str(out), "--save-npy", "--npy-size", size, "--no-grid"]
    assert run(capsys, *argv)[0] == 0
    saved = np.load(out / "cat.gradcam.npy")
    assert saved.dtype == np.float32 and saved.shape == shape
    assert saved.min() >= 0 and saved.max() == pytest.approx(1.0, abs=0.05)
    if size == "model":
        from camscope import explain

        x = io.preprocess(io.load_image(img), SPEC)
        np.testing.assert_allclose(saved, explain(model, x).maps["gradcam"][0].numpy(), atol=1e-6)


def test_unicode_stems_and_names_printed_safely(tmp_path, capsys, tiny) -> None:
    good = make_image(tmp_path / "café latte.png")
    evil = tmp_path / "evil\x1b[2J\nname.png"
    evil.write_bytes(b"not an image at all")
    out = tmp_path / "out"
    code, _, err = run(capsys, "explain", str(good), str(evil), "--out", str(out))
    assert code == 1
    assert (out / "café latte.gradcam.png").is_file()
    assert "\x1b" not in err and "evil\\x1b[2J\\nname.png" in err
    assert err.count("\n") == 1  # one line for the one bad file
    records = summary(out)["images"]
    assert records[1]["source"] == str(evil)  # the summary keeps the real name (JSON-escaped)


def test_math_and_control_characters_in_names_do_not_break_grids(
    tmp_path, capsys, monkeypatch
) -> None:
    names = ["$x_$ cat", "dog $\\frac{", "bird", "fish", "a\nb"]
    spec = ModelSpec("$model$ v2", input_size=(32, 32), class_names=names)
    patch_loader(monkeypatch, tiny_model(), spec)
    img = make_image(tmp_path / "a.png")
    out = tmp_path / "out"
    code, _, err = run(capsys, "explain", str(img), "--out", str(out), "--target", "top5")
    assert code == 0, err
    with Image.open(out / "a.grid.png") as grid:
        assert grid.width > 320


# ---------------------------------------------------------------------------------------------
# Methods that cannot explain this model are skipped; the others are written


def test_incompatible_method_is_skipped_and_the_rest_written(tmp_path, capsys, tiny) -> None:
    img = make_image(tmp_path / "a.png")
    out = tmp_path / "out"
    argv = ["explain", str(img), "-m", "gradcam,cam,layercam", "-l", "1", "--out", str(out)]
    code, stdout, err = run(capsys, *argv)
    assert code == 1
    assert "skipped method cam:" in err and "global average pooling" in err.lower()
    assert (out / "a.gradcam.png").is_file() and (out / "a.layercam.png").is_file()
    assert not (out / "a.cam.png").exists()
    data = summary(out)
    assert list(data["skipped"]) == ["cam"]
    assert data["images"][0]["methods"] == ["gradcam", "layercam"]
    assert "skipped cam" in stdout
    code, _, err = run(capsys, "explain", str(img), "-m", "cam", "-l", "1", "--out", str(out))
    assert code == 2  # nothing could run: a usage error as before
    # a method that fits one of two layers: skipped at the other only, its map from the one
    argv = ["explain", str(img), "-m", "gradcam,cam", "-l", "1,3", "--out", str(tmp_path / "two")]
    code, stdout, err = run(capsys, *argv)
    assert code == 1 and "skipped method cam at layer 1: CAM: layer '1' has 4 channels" in err
    record = summary(tmp_path / "two")["images"][0]
    assert list(record["skipped"]) == ["cam@1"] and "a.cam.png" in record["files"]
    assert "skipped cam at layer 1" in stdout


# ---------------------------------------------------------------------------------------------
# Models that are not RGB ImageNet classifiers


def test_one_channel_model_and_preprocessing_options(tmp_path, capsys, monkeypatch) -> None:
    model = tiny_model(in_channels=1)
    patch_loader(monkeypatch, model, SPEC)  # a spec that still says RGB ImageNet
    values = np.array([[0, 20000, 40000], [65535, 1, 300]], dtype=np.uint16)
    img = tmp_path / "xray.png"
    Image.fromarray(np.kron(values, np.ones((8, 8), dtype=np.uint16))).save(img)
    names = tmp_path / "labels.txt"
    names.write_text("\n".join(f"finding {i}" for i in range(5)) + "\n\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["explain", str(img), "--out", str(out), "--save-npy", "--class-names", str(names)]
    code, _, err = run(capsys, *argv, "--mean", "0.5", "--std", "0.25", "--input-size", "24")
    assert code == 0, err
    data = summary(out)
    assert data["spec"]["channels"] == 1 and data["spec"]["mean"] == [0.5]
    assert data["spec"]["std"] == [0.25] and data["spec"]["input_size"] == [24, 24]
    assert data["images"][0]["target"]["label"].startswith("finding ")
    # the map is the one of the 16-bit values, normalised with the given mean/std
    from camscope import explain

    grey = ModelSpec("g", input_size=(24, 24), mean=(0.5,), std=(0.25,))
    x = io.preprocess(io.load_image(img), grey)
    assert x.shape == (1, 1, 24, 24)
    expected = explain(model, x).maps["gradcam"][0].numpy()
    np.testing.assert_allclose(np.load(out / "xray.gradcam.npy"), expected, atol=1e-6)
    # without --mean/--std the user is told which normalisation is used
    code, _, err = run(capsys, "explain", str(img), "--out", str(out))
    assert code == 0 and "reads 1 channel(s)" in err and "--mean" in err
    code, _, err = run(capsys, "explain", str(img), "--out", str(out), "--mean", "0.1,0.2")
    assert code == 2 and "2 values for a 1-channel model" in err
    names.write_text("a\nb\n")
    code, _, err = run(capsys, "explain", str(img), "--out", str(out), "--class-names", str(names))
    assert code == 2 and "has 2 names; the model has 5 outputs" in err


def test_dicom_input_keeps_its_pixel_spacing(tmp_path, capsys, monkeypatch) -> None:
    from test_io_medical import write_dicom

    patch_loader(monkeypatch, tiny_model(in_channels=1), SPEC)
    path = write_dicom(tmp_path / "scan.dcm")
    out = tmp_path / "out"
    code, _, err = run(capsys, "explain", str(path), "--out", str(out), "--window", "140,201")
    assert code == 0, err
    record = summary(out)["images"][0]
    assert record["input"]["pixel_spacing_mm"] == [0.5, 0.75]
    assert record["input"]["window"] == [140.0, 201.0] and (out / "scan.gradcam.png").is_file()


def test_progress_line_without_a_terminal(monkeypatch, capsys) -> None:
    from camscope.data import progress as bars

    clock = iter(float(t) for t in range(0, 1000, 3))  # each reading 3 s after the last
    monkeypatch.setattr(bars.time, "monotonic", lambda: next(clock))
    progress = bars.Progress(10, "camscope explain", every=5.0)
    for _ in range(4):
        progress.advance()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "camscope explain: 2/10 images, 3.00 s/image, about 24 s left",
        "camscope explain: 4/10 images, 3.00 s/image, about 18 s left",
    ]


def test_progress_of_a_slow_method_on_one_image_without_a_terminal(monkeypatch, capsys) -> None:
    """The perturbation methods' progress(done, total) callback gets a rate-limited line with
    the time left of the running method (SS-CAM on one image can take many minutes)."""
    from camscope.data import progress as bars

    clock = iter(float(t) for t in range(0, 1000, 3))
    monkeypatch.setattr(bars.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    progress = bars.Progress(2, "camscope explain", every=5.0)  # began at t = 0
    callback = progress.passes  # what the picture job gives the methods without a terminal
    for done in (100, 200, 300, 400):  # t = 3, 6, 9, 12
        callback(done, 1000)
    callback(30, 60)  # another method (a new run, begun at t = 12) at t = 15: too soon
    callback(45, 60)  # t = 18: 45 passes in 6 s, 15 to go
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "camscope explain: image 1/2: model passes 200/1000, about 24 s left for this method",
        "camscope explain: image 1/2: model passes 400/1000, about 18 s left for this method",
        "camscope explain: image 1/2: model passes 45/60, about 2 s left for this method",
    ]


def test_class_names_listed_in_the_epilog_still_resolve(tmp_path, capsys, tiny) -> None:
    # --class-names replaces the spec's names, so --target looks them up there
    names = tmp_path / "n.txt"
    names.write_text("\n".join(["zebra", "yak", "xerus", "wolf", "vole"]))
    img = make_image(tmp_path / "a.png")
    out = tmp_path / "out"
    argv = ["explain", str(img), "--out", str(out), "--class-names", str(names), "-t", "wolf"]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert summary(out)["images"][0]["target"] == {
        "class": 3,
        "label": "wolf",
        "probability": pytest.approx(summary(out)["images"][0]["targets"][0]["probability"]),
    }
    assert CLASS_NAMES[3] != "wolf"


def test_predict_single_logit_is_a_sigmoid(tmp_path, capsys, monkeypatch) -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(2, 1),
    ).eval()
    patch_loader(monkeypatch, model, ModelSpec("binary", input_size=(16, 16), class_names=["cat"]))
    img = make_image(tmp_path / "a.png")
    code, out, err = run(capsys, "predict", str(img), "--json", "--topk", "2")
    assert code == 0, err
    predictions = json.loads(out)["images"][0]["predictions"]
    with torch.no_grad():
        logit = float(
            model(io.preprocess(io.load_image(img), SPEC.__class__("s", input_size=(16, 16))))[0, 0]
        )
    p = 1 / (1 + np.exp(-logit))
    by_class = {entry["class"]: entry for entry in predictions}
    assert by_class[1]["label"] == "cat" and by_class[1]["probability"] == pytest.approx(
        p, abs=1e-6
    )
    assert by_class[0]["label"] == "not cat (negative class)"
    assert by_class[0]["probability"] == pytest.approx(1 - p, abs=1e-6)
    assert json.loads(out)["images"][0]["probability_kind"] == "sigmoid"


def test_predict_multilabel_gives_a_sigmoid_per_class(tmp_path, capsys, tiny) -> None:
    img = make_image(tmp_path / "a.png")
    code, out, err = run(capsys, "predict", str(img), "--json", "--multilabel", "--topk", "5")
    assert code == 0, err
    record = json.loads(out)["images"][0]
    model, _ = tiny
    with torch.no_grad():
        logits = model(io.preprocess(io.load_image(img), SPEC))[0]
    by_class = {entry["class"]: entry["probability"] for entry in record["predictions"]}
    assert by_class == pytest.approx(
        {c: float(torch.sigmoid(logits[c])) for c in range(5)}, abs=1e-6
    )
    assert record["probability_kind"] == "sigmoid"


# ---------------------------------------------------------------------------------------------
# What is said once, what survives an interruption, --no-progress (issue 21 #12)


def test_a_warning_is_printed_once_naming_the_files(tmp_path, capsys, monkeypatch) -> None:
    """--as-is with batch-norm in train mode: the engine warns on every call and every augmented
    copy; the command says it once (it said it five times here), with the files' names."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5),
    ).train()  # fmt: skip
    patch_loader(monkeypatch, model, SPEC)
    images = [str(make_image(tmp_path / f"{n}.png", seed=i)) for i, n in enumerate("abcd")]
    out = tmp_path / "out"
    argv = ["explain", *images, "--as-is", "--aug-smooth", "--batch-size", "2", "-o", str(out)]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert err.count("are in train mode") == 1, err
    assert "camscope explain: warning: mode='as-is'" in err
    assert len(summary(out)["warnings"]) == 1 and all(m.training for m in model.modules())


def test_a_warning_the_library_logs_for_every_batch_is_printed_once(
    tmp_path, capsys, monkeypatch
) -> None:
    """audit walks batches; a model with no evidence anywhere gives the same all-zero-map
    warning in every batch."""
    model = tiny_model()
    with torch.no_grad():
        model[-1].weight.zero_()  # every class's gradient is zero: every map is empty
    kinds = ["cat", "cup", "motorcycle", "rocket", "none"]  # the built-in set's objects
    patch_loader(monkeypatch, model, ModelSpec("tiny", input_size=(32, 32), class_names=kinds))
    argv = ["audit", "--data", "builtin:6", "--batch-size", "2", "--out", str(tmp_path / "a")]
    code, _, err = run(capsys, *argv, "--no-progress")
    lines = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert code == 0 and lines, err
    assert len(lines) == len(set(lines)), err


def test_an_interrupted_score_cam_run_keeps_what_it_finished(tmp_path, capsys, tiny) -> None:
    from camscope.data import progress as bars

    model, _ = tiny
    images = [str(make_image(tmp_path / "in" / f"{i}.png", seed=i)) for i in range(4)]
    seen: list[bars.Progress] = []
    real_init = bars.Progress.__init__

    def record(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        seen.append(self)

    def ctrl_c(*_):
        if seen and seen[-1].done >= 2:  # the third image's Score-CAM passes
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bars.Progress, "__init__", record)
        model[0].register_forward_hook(ctrl_c)
        out = tmp_path / "out"
        code, stdout, err = run(capsys, "explain", *images, "-m", "scorecam", "-o", str(out))
    assert code == 130 and "interrupted after 2 of 4 image(s)" in err and not stdout
    data = summary(out)
    assert data["interrupted"] is True and [r["stem"] for r in data["images"]] == ["0", "1"]
    for record_ in data["images"]:
        assert (
            record_["files"] == ["0.scorecam.png", "0.grid.png"] if record_["stem"] == "0" else True
        )
        assert all((out / name).is_file() for name in record_["files"])


@pytest.mark.parametrize("quiet", [False, True])
def test_no_progress(tmp_path, capsys, tiny, monkeypatch, quiet) -> None:
    from camscope.data import progress as bars

    clock = iter(float(t) for t in range(0, 100000, 10))  # every reading 10 s after the last
    monkeypatch.setattr(bars.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    images = [str(make_image(tmp_path / "in" / f"{i}.png", seed=i)) for i in range(3)]
    argv = ["explain", *images, "-m", "scorecam", "-o", str(tmp_path / "out")]
    code, _, err = run(capsys, *argv, *(["--no-progress"] if quiet else []))
    assert code == 0, err
    said = [line for line in err.splitlines() if line.startswith("camscope explain: ")]
    if quiet:
        assert said == []
    else:  # images done, and the model passes of the image under way
        assert any("images, " in line for line in said) and any(
            "model passes" in line for line in said
        )
