"""The engine's command-line options: ``-m all`` under a pass budget (``--allow-slow``,
``--pass-budget``), ``--as-is``, ``--multilabel``, ``camscope methods --markdown`` and
``camscope layers`` on a ViT (issue 16, items 4, 10, 11, 13)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from camscope import models
from camscope.cli import main as cli
from camscope.methods import choose_methods
from camscope.models import ModelSpec

SPEC = ModelSpec(name="tiny", input_size=(32, 32), class_names=list("abcde"), source="test")


def tiny_model(channels: int = 8, outputs: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, outputs),
    )


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """``models.load_model`` returns a tiny CNN left in train mode (as a factory might), unless
    the CLI asks for eval mode through ``keep_mode=False``, like the real loader."""
    calls: list[dict] = []

    def fake(name: str = "x", **kwargs: object) -> tuple[nn.Module, ModelSpec]:
        calls.append(kwargs)
        model = tiny_model().train()
        return (model if kwargs.get("keep_mode") else model.eval()), SPEC

    monkeypatch.setattr(models.loading, "load_model", fake)
    return calls


def image(tmp_path: Path) -> str:
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    path = tmp_path / "in.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def test_method_all_leaves_out_what_exceeds_the_budget(
    tmp_path: Path, loader: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    # layer '3' has 8 channels: SS-CAM 35 x 8 + 1 = 281 passes, IS-CAM 10 x 8 + 1 = 81; occlusion
    # at 32 px: 5 px patches at stride 3, 10 x 10 positions + the unoccluded pass = 101; SESS
    # 122 crops x 2 = 244 (12 scales of the 32 px window); Recipro-CAM one pass per position of
    # the 16 x 16 layer + 1 = 257
    out = tmp_path / "out"
    argv = ["explain", image(tmp_path), "-m", "all", "-l", "4", "--pass-budget", "50", "-o"]
    code = cli.main([*argv, str(out)])
    err = capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0
    over_budget = {"sscam", "iscam", "occlusion", "sess", "reciprocam"}
    vit_only = {"legrad", "attention-rollout", "transformer-attribution", "vit-reciprocam"}
    assert set(summary["methods_left_out"]) == over_budget | vit_only
    assert all("not a vision transformer" in summary["methods_left_out"][m] for m in vit_only)
    assert not summary["skipped"]  # left out before the run, not skipped during it
    assert "about 257 model passes" in summary["methods_left_out"]["reciprocam"]
    assert "about 101 model passes" in summary["methods_left_out"]["occlusion"]
    assert (
        "about 281 model passes per image, over the budget of 50"
        in summary["methods_left_out"]["sscam"]
    )
    assert "left out sscam" in err and "--allow-slow" in err
    assert "sscam" not in summary["methods"] and "scorecam" in summary["methods"]
    # the library call behind it (explain, the data-set job, library callers)
    net, x = tiny_model().eval(), torch.zeros(1, 3, 32, 32)
    choice = choose_methods("all", net, x, "4", allow_slow=True, budget=50)
    assert {"gradcam", "sscam"} <= set(choice.methods) and set(choice.left_out) == vit_only
    assert choice.layers == ["4"]
    named = choose_methods("gradcam,sscam", net, x, "4", budget=50)
    assert named.methods == ["gradcam", "sscam"] and "sscam" in named.notes[0]
    assert named.estimates == {"gradcam": 0, "sscam": 281} and not named.left_out
    # Shapley-CAM: two passes per explained class, so a top-3 target counts three classes
    assert choose_methods("shapleycam", net, x, "4", target="topk:3").estimates == {"shapleycam": 6}
    assert choose_methods("shapleycam", net, x, "4", target=2).estimates == {"shapleycam": 2}


def test_as_is_keeps_the_factory_mode_and_reports_the_warning(
    tmp_path: Path, loader: list[dict]
) -> None:
    out = tmp_path / "asis"
    assert cli.main(["explain", image(tmp_path), "-l", "4", "--as-is", "-o", str(out)]) == 0
    assert loader[-1]["keep_mode"] is True and loader[-1]["hints"] == "cli"
    record = json.loads((out / "summary.json").read_text())["images"][0]
    assert any("train mode" in w for w in record["warnings"])
    plain = tmp_path / "plain"
    assert cli.main(["explain", image(tmp_path), "-l", "4", "-o", str(plain)]) == 0
    assert loader[-1]["keep_mode"] is False
    assert json.loads((plain / "summary.json").read_text())["images"][0]["warnings"] == []


def test_multilabel_probabilities_are_sigmoids(tmp_path: Path, loader: list[dict]) -> None:
    out = tmp_path / "multi"
    argv = ["explain", image(tmp_path), "-l", "4", "-t", "2", "--multilabel", "-o", str(out)]
    assert cli.main(argv) == 0
    target = json.loads((out / "summary.json").read_text())["images"][0]["target"]
    from camscope import io

    x = io.preprocess(io.load_image(tmp_path / "in.png"), SPEC)
    with torch.no_grad():
        logit = float(tiny_model().eval()(x[None] if x.ndim == 3 else x)[0, 2])
    assert target["probability"] == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-5)


def test_methods_markdown_is_the_docs_table(capsys: pytest.CaptureFixture[str]) -> None:
    from camscope.methods.table import markdown_table

    assert cli.main(["methods", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown_table()


def test_layers_marks_vit_blocks_not_the_patch_embedding(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=16, depth=4, num_heads=2, num_classes=5
    )
    spec = ModelSpec(name="vit", input_size=(32, 32), class_names=list("abcde"))
    monkeypatch.setattr(models.loading, "load_model", lambda name, **kw: (vit, spec))
    assert cli.main(["layers", "vit", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    picks = (record["first"], record["middle"], record["last"], record["auto"])
    assert picks == ("blocks.0.norm1", "blocks.2.norm1", "blocks.3.norm1", "blocks.3.norm1")
