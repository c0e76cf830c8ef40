"""What the CLI tests share: a tiny random CNN standing in for the model loader, test images,
and an in-process ``camscope`` run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from camscope import models
from camscope.cli import main as cli
from camscope.models import ModelSpec

CLASS_NAMES = ["tabby, tabby cat", "tiger cat", "crane, bird", "crane, machine", "dog"]
SPEC = ModelSpec(name="tiny", input_size=(32, 32), class_names=CLASS_NAMES, source="test")
REPO = Path(__file__).resolve().parents[1]


def tiny_model(in_channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, len(CLASS_NAMES)),
    ).eval()


def patch_loader(monkeypatch: Any, model: nn.Module, spec: ModelSpec) -> list[dict[str, Any]]:
    """Make ``camscope.models.load_model`` (and the loader of ``ModelRecipe.load``) return
    ``(model, spec)``; returns its recorded calls."""
    calls: list[dict[str, Any]] = []

    def fake_load_model(name: str = "efficientnet_lite0", **kwargs: Any) -> Any:
        calls.append({"name": name, **kwargs})
        return model, spec

    monkeypatch.setattr(models.loading, "load_model", fake_load_model)  # commands: ModelRecipe
    monkeypatch.setattr(models, "load_model", fake_load_model)  # camscope.models.load_model
    return calls


def make_image(path: Path, size: tuple[int, int] = (40, 30), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
