"""Tests of the ``camscope`` command line: parsing, files written, summary, exit codes, messages.

Most tests run ``main([...])`` in-process with ``camscope.models.load_model`` replaced by a tiny
random CNN on 32 x 32 inputs; one subprocess run uses the real (offline) default model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import CLASS_NAMES, REPO, SPEC, make_image, patch_loader, run, tiny_model
from PIL import Image
from torch import nn

from camscope import io, viz
from camscope.cli import main as cli
from camscope.data.inputs import DEMO_IMAGES


@pytest.fixture
def tiny(monkeypatch):
    """Replace the model loader by the tiny CNN; records the keyword arguments it got."""
    model = tiny_model()
    return model, patch_loader(monkeypatch, model, SPEC)


def probabilities(model: nn.Module, path: Path) -> torch.Tensor:
    """Softmax of the tiny model on the preprocessed image (independent of the CLI)."""
    x = io.preprocess(io.load_image(path), SPEC)
    if x.ndim == 3:
        x = x[None]
    with torch.no_grad():
        return model(x).softmax(-1)[0]


# ---------------------------------------------------------------------------------------------
# Parsing


def test_parse_args_explain() -> None:
    argv = "explain a.png b.png --method gradcam,layercam --layer x,y --layer z --target top5"
    args = cli.build_parser().parse_args([*argv.split(), "--alpha", "0.3", "--save-npy", "-v"])
    assert args.command == "explain"
    assert args.images == ["a.png", "b.png"]
    assert args.method == "gradcam,layercam"
    assert args.layer == ["x,y", "z"]
    assert args.target == "top5" and args.alpha == 0.3 and args.save_npy and args.verbose == 1
    assert args.model == "efficientnet_lite0" and args.out == Path("out/explain")
    defaults = cli.build_parser().parse_args(["explain"])
    assert defaults.images == [] and defaults.method == "gradcam" and defaults.layer is None
    assert defaults.target == "top1" and defaults.colormap == "inferno"
    assert defaults.batch_size is None  # the run's: 1 for pictures (see below), 32 for Parquet


def test_parse_helpers() -> None:
    from camscope.cli import values
    from camscope.data import inputs
    from camscope.data.classes import parse_target
    from camscope.methods import parse_methods

    assert values.split_list(["a,b", " c ", ""]) == ["a", "b", "c"]
    assert values.layer_spec(None) == "auto"
    assert values.layer_spec(["layer4"]) == "layer4"
    assert values.layer_spec(["layer3,layer4"]) == ["layer3", "layer4"]
    assert parse_methods("GradCAM, gradcam++,gradcam") == ["gradcam", "gradcam++"]
    assert parse_target("top5", CLASS_NAMES) == "topk:5"
    assert parse_target("topk:3", CLASS_NAMES) == "topk:3"
    assert parse_target("4", CLASS_NAMES) == 4
    assert parse_target("tabby", CLASS_NAMES) == 0
    assert parse_target("Tiger_Cat", CLASS_NAMES) == 1
    assert not hasattr(values, "parse_target")  # one target parser: camscope.data.classes
    assert inputs.unique_stems(["a", "b", "a", "A", "a-2"]) == ["a", "b", "a-2", "A-3", "a-2-2"]
    assert inputs.stem_of("/x/y/cat.01.jpg") == "cat.01"
    assert inputs.stem_of("https://h/p/dog%20one.png?x=1") == "dog one"


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys, camscope.cli.main as m\n"
        "for argv in (['--help'], ['explain', '--help'], ['methods', '--help'],\n"
        "             ['evaluate', '--help']):\n"
        "    assert m.main(argv) == 0\n"
        "heavy = [n for n in ('torch', 'numpy', 'matplotlib') if n in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "camscope explain" in done.stdout and "--target" in done.stdout
    # evaluate's help lists the registered metric families (read without torch)
    assert "robustness      max-/avg-sensitivity" in done.stdout


def test_a_reader_that_goes_away_is_not_an_internal_error() -> None:
    """`camscope methods | head -1`: the pipe closes before camscope has written everything."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "camscope", "methods"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "internal error" not in err and "Traceback" not in err and "Exception" not in err, err


# ---------------------------------------------------------------------------------------------
# explain


def test_explain_writes_overlays_grid_npy_and_summary(tmp_path, capsys, tiny) -> None:
    model, calls = tiny
    img = make_image(tmp_path / "in" / "cat.png", size=(40, 30))
    out = tmp_path / "out"
    code, stdout, stderr = run(
        capsys,
        "explain",
        str(img),
        "--method",
        "gradcam,guided-gradcam",
        "--out",
        str(out),
        "--save-npy",
        "--npy-size",
        "image",
        "--random-init",
    )
    assert code == 0, stderr
    assert calls[0]["pretrained"] is False and calls[0]["weights"] is None
    expected = {
        "cat.gradcam.png",
        "cat.guided-gradcam.png",
        "cat.gradcam.npy",
        "cat.guided-gradcam.npy",
        "cat.grid.png",
        "summary.json",
    }
    assert {p.name for p in out.iterdir()} == expected
    for name in ("cat.gradcam.png", "cat.guided-gradcam.png"):
        with Image.open(out / name) as png:
            assert png.size == (40, 30) and png.mode == "RGB"
    heat = np.load(out / "cat.gradcam.npy")
    assert heat.dtype == np.float32 and heat.shape == (30, 40)
    assert (
        heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.9
    )  # resizing may shave the peak
    # The overlay PNG is exactly the saved map blended over the image.
    again = viz.overlay(Image.open(img).convert("RGB"), heat, "inferno", 0.5)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "cat.gradcam.png")), again)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "tiny" and summary["spec"]["input_size"] == [32, 32]
    assert summary["methods"] == ["gradcam", "guided-gradcam"]
    assert summary["batch_size"] == 1  # explain's default for pictures
    (record,) = summary["images"]
    probs = probabilities(model, img)
    top = int(probs.argmax())
    assert record["error"] is None and record["source"] == str(img)
    assert record["target"]["class"] == top and record["target"]["label"] == CLASS_NAMES[top]
    assert record["target"]["probability"] == pytest.approx(float(probs[top]), abs=1e-5)
    assert [e["class"] for e in record["top5"]] == probs.argsort(descending=True).tolist()
    assert record["layers"] == ["3"]  # auto: the last spatial output before pooling (ReLU)
    assert set(record["files"]) == expected - {"summary.json"}
    assert record["seconds"] > 0
    assert "1 of 1" in stdout


def test_explain_smoothing_and_method_options_reach_the_library(tmp_path, capsys, tiny) -> None:
    from camscope import explain

    model, _ = tiny
    img = make_image(tmp_path / "cat.png", size=(32, 32))
    out = tmp_path / "out"
    argv = ["-m", "gradcam++,sscam", "--aug-smooth", "--eigen-smooth", "--save-npy"]
    options = ["-O", "num_samples=2", "-O", "seed=7", "-O", "align_corners=true"]
    code, _, stderr = run(capsys, "explain", str(img), "-o", str(out), *argv, *options)
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aug_smooth"] and summary["eigen_smooth"]
    assert summary["method_options"] == {"num_samples": 2, "seed": 7, "align_corners": True}
    x = io.preprocess(io.load_image(img), SPEC)
    x = x if x.ndim == 4 else x[None]
    opts = {"num_samples": 2, "seed": 7, "align_corners": True}
    ref = explain(
        model, x, ["gradcam++", "sscam"], aug_smooth=True, eigen_smooth=True, method_options=opts
    )
    plain = explain(model, x, ["gradcam++", "sscam"], method_options=opts)
    for method in ("gradcam++", "sscam"):
        saved = np.load(out / f"cat.{method}.npy")
        expected = ref.maps[method][0].numpy()
        np.testing.assert_allclose(saved, expected, atol=1e-4)
        assert np.abs(plain.maps[method][0].numpy() - saved).max() > 1e-3  # the flags changed it


def test_explain_topk_writes_one_overlay_per_class(tmp_path, capsys, tiny) -> None:
    model, _ = tiny
    img = make_image(tmp_path / "dog.png", size=(20, 24), seed=1)
    out = tmp_path / "out"
    code, _, stderr = run(capsys, "explain", str(img), "--target", "top2", "--out", str(out))
    assert code == 0, stderr
    top2 = probabilities(model, img).argsort(descending=True)[:2].tolist()
    names = {p.name for p in out.iterdir()}
    assert names == {f"dog.gradcam.{c}.png" for c in top2} | {"dog.grid.png", "summary.json"}
    record = json.loads((out / "summary.json").read_text())["images"][0]
    assert [t["class"] for t in record["targets"]] == top2


def test_explain_class_name_target_and_layers(tmp_path, capsys, tiny) -> None:
    img = make_image(tmp_path / "a.png")
    out = tmp_path / "out"
    code, _, stderr = run(
        capsys,
        "explain",
        str(img),
        "--target",
        "tiger cat",
        "--layer",
        "0",
        "--layer",
        "2",
        "-o",
        str(out),
    )
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    record = summary["images"][0]
    assert record["target"]["class"] == 1 and record["target"]["label"] == "tiger cat"
    assert record["layers"] == ["0", "2"] and summary["layer"] == ["0", "2"]
    assert (out / "a.grid.png").is_file()


def test_explain_unique_stems(tmp_path, capsys, tiny) -> None:
    a = make_image(tmp_path / "one" / "x.png")
    b = make_image(tmp_path / "two" / "x.png", seed=2)
    out = tmp_path / "out"
    code, _, stderr = run(capsys, "explain", str(a), str(b), "--out", str(out))
    assert code == 0, stderr
    assert (out / "x.gradcam.png").is_file() and (out / "x-2.gradcam.png").is_file()
    records = json.loads((out / "summary.json").read_text())["images"]
    assert [r["stem"] for r in records] == ["x", "x-2"]
    assert [r["source"] for r in records] == [str(a), str(b)]


def test_explain_demo_images_batched(tmp_path, capsys, tiny) -> None:
    out = tmp_path / "demo"
    code, _, stderr = run(capsys, "explain", "--out", str(out), "--batch-size", "3")
    assert code == 0, stderr
    records = json.loads((out / "summary.json").read_text())["images"]
    assert [r["stem"] for r in records] == list(DEMO_IMAGES)
    for stem in DEMO_IMAGES:
        assert (out / f"{stem}.gradcam.png").is_file() and (out / f"{stem}.grid.png").is_file()


def test_explain_bad_images_are_skipped_with_exit_1(tmp_path, capsys, tiny) -> None:
    good = make_image(tmp_path / "good.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "out"
    code, _, stderr = run(capsys, "explain", str(good), str(corrupt), str(missing), "-o", str(out))
    assert code == 1
    assert "Traceback" not in stderr
    assert "corrupt.png" in stderr and "missing.jpg" in stderr
    records = {
        Path(r["source"]).name: r for r in json.loads((out / "summary.json").read_text())["images"]
    }
    assert records["good.png"]["error"] is None and records["good.png"]["files"]
    for name in ("corrupt.png", "missing.jpg"):
        assert records[name]["error"] and records[name]["files"] == []
    assert not list(out.glob("corrupt.*")) and not list(out.glob("missing.*"))
    assert (out / "good.gradcam.png").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "gradcam+++"], "unknown method 'gradcam+++'"),
        (["--method", ","], "--method is empty"),
        (["--layer", "nope"], "no layer named 'nope'"),
        (["--colormap", "infernal"], "unknown colormap 'infernal'"),
        (["--target", "top0"], "--target 'top0': K must be at least 1"),
        (["--target", "99"], "out of range"),
        (["--target", "crane"], "matches several classes"),
        (["--target", "zebra"], "closest names"),
        (["--random-init", "--weights", "w.pt"], "exclude each other"),
        (["-m", "scorecam", "-O", "batch_sise=4"], "unknown key 'batch_sise'"),
        (["-m", "scorecam", "-O", "batch_size"], "expected KEY=VALUE"),
        (["-m", "scorecam", "-O", "precision=fp8"], "precision"),
        (["-m", "scorecam", "-O", "batch_size=0"], "must be >= 1"),
    ],
)
def test_explain_usage_errors_exit_2(tmp_path, capsys, tiny, argv, message) -> None:
    img = make_image(tmp_path / "a.png")
    code, _, stderr = run(capsys, "explain", str(img), "-o", str(tmp_path / "o"), *argv)
    assert code == 2
    assert message in stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1
    assert not list((tmp_path / "o").glob("*.png"))


def test_empty_folder_exit_2(tmp_path, capsys, tiny) -> None:
    (tmp_path / "empty").mkdir()
    code, _, stderr = run(capsys, "explain", str(tmp_path / "empty"), "-o", str(tmp_path / "o"))
    assert code == 2 and "no images found" in stderr and "empty" in stderr


def test_argparse_errors_exit_2(capsys) -> None:
    code, _, stderr = run(capsys, "explain", "--alpha", "1.5")
    assert code == 2 and "between 0 and 1" in stderr
    code, _, stderr = run(capsys, "explain", "--batch-size", "0")
    assert code == 2 and ">= 1" in stderr
    code, _, stderr = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in stderr


def test_unknown_model_exit_2(capsys, tmp_path) -> None:
    code, _, stderr = run(
        capsys, "explain", "--model", "resnet_9000", "--random-init", "-o", str(tmp_path)
    )
    assert code == 2
    assert "resnet_9000" in stderr and "Traceback" not in stderr


# ---------------------------------------------------------------------------------------------
# methods, layers, predict


def test_methods_lists_the_registry(capsys) -> None:
    from camscope import list_methods

    code, out, _ = run(capsys, "methods")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["method", "gradients", "class-specific"]
    listed = [line.split()[0] for line in lines[2:]]
    assert listed == list_methods()
    code, out, _ = run(capsys, "methods", "--json")
    records = json.loads(out)
    by_name = {r["name"]: r for r in records}
    assert by_name["eigencam"]["needs_gradients"] is False
    assert by_name["guided-gradcam"]["needs_guided_gradients"] is True


def test_layers_marks_auto_and_convs(capsys, tiny) -> None:
    code, out, _ = run(capsys, "layers", "tiny", "--size", "16")
    assert code == 0
    rows = {line.split()[1]: line for line in out.splitlines() if line[:1].isdigit()}
    assert set(rows) == {"0", "1", "2", "3", "4"}  # conv, relu, conv, relu, pool (1x1)
    assert "auto" in rows["3"] and "first" in rows["0"] and "middle, last" in rows["2"]
    assert "6x8x8" in rows["2"] and " 2 " in rows["2"]  # shape and stride at 16 px
    assert "--layer auto -> 3" in out and "interpolation" in out
    code, out, _ = run(capsys, "layers", "tiny", "--json")
    record = json.loads(out)
    assert record["auto"] == "3" and record["first"] == "0" and record["last"] == "2"
    assert record["layers"][2]["shape"] == [6, 16, 16] and record["layers"][2]["conv_index"] == 1


def test_layers_says_it_did_not_load_the_weights(capsys) -> None:
    code, out, _ = run(capsys, "layers", "efficientnet_lite0")
    assert code == 0 and "weights: not loaded (the layers do not depend on them" in out
    code, out, _ = run(capsys, "layers", "efficientnet_lite0", "--json")
    assert json.loads(out)["weights_skipped"] is True
    code, out, _ = run(capsys, "layers", "efficientnet_lite0", "--json", "--random-init")
    assert json.loads(out)["weights_skipped"] is False


def test_layers_of_a_one_channel_model(capsys, monkeypatch) -> None:
    patch_loader(monkeypatch, tiny_model(in_channels=1), SPEC)  # the spec still says RGB
    code, out, err = run(capsys, "layers", "tiny", "--size", "16")
    assert code == 0, err
    assert "explainable layers for a 1x16x16 input" in out and "--layer auto -> 3" in out


def test_predict_topk(tmp_path, capsys, tiny) -> None:
    model, _ = tiny
    img = make_image(tmp_path / "p.png")
    missing = tmp_path / "nope.png"
    code, out, stderr = run(capsys, "predict", str(img), str(missing), "--topk", "3", "--json")
    assert code == 1 and "nope.png" in stderr
    records = json.loads(out)["images"]
    probs = probabilities(model, img)
    predictions = records[0]["predictions"]
    assert [p["class"] for p in predictions] == probs.argsort(descending=True)[:3].tolist()
    assert predictions[0]["probability"] == pytest.approx(float(probs.max()), abs=1e-6)
    assert records[1]["error"] and records[1]["predictions"] == []
    code, out, _ = run(capsys, "predict", str(img), "--topk", "9")
    assert code == 2


@pytest.mark.parametrize("factory", ["dict_output", "tuple_output"])
def test_predict_reads_dict_and_tuple_outputs(tmp_path, capsys, factory) -> None:
    """A model returning {"logits": ...} crashed predict's own adapter (AttributeError)."""
    import heads

    from camscope.io import preprocess

    img = make_image(tmp_path / "p.png", size=(16, 16))
    code, out, err = run(capsys, "predict", str(img), "--model", f"heads:{factory}", "--json")
    assert code == 0, err
    _, spec = heads.load(factory)
    with torch.no_grad():  # the same weights as a plain tensor output
        logits = heads.load("softmax")[0](preprocess(Image.open(img), spec))[0]
    probs = logits.softmax(0)
    predictions = json.loads(out)["images"][0]["predictions"]
    assert [p["class"] for p in predictions] == probs.argsort(descending=True).tolist()
    assert [p["probability"] for p in predictions] == pytest.approx(
        probs.sort(descending=True).values.tolist(), abs=1e-6
    )


# ---------------------------------------------------------------------------------------------
# Real default model, real process


@pytest.mark.slow
def test_subprocess_smoke_with_default_model(tmp_path) -> None:
    img = make_image(tmp_path / "small.png", size=(48, 40))
    out = tmp_path / "tmp"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "camscope", "explain", str(img), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "efficientnet_lite0"
    record = summary["images"][0]
    assert record["error"] is None and len(record["top5"]) == 5
    assert 0.0 < record["target"]["probability"] <= 1.0
    with Image.open(out / "small.gradcam.png") as png:
        assert png.size == (48, 40)


def test_torchs_torchscript_deprecation_is_not_the_users_to_read() -> None:
    """The fast copy of the perturbation methods is TorchScript, which torch 2.x marks as
    deprecated on every trace: a command says it only with -v."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert cli.main(["methods"]) == 0
        warnings.warn_explicit(
            "jit.trace is deprecated", FutureWarning, "t.py", 1, "torch.jit._trace"
        )
        warnings.warn_explicit("ours", FutureWarning, "t.py", 1, "camscope.core")
    assert [str(w.message) for w in seen] == ["ours"]
