"""camscope.models.recipe: the one device choice and model loading of every command (the CLI,
the data-set job, training) and the preprocessing overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from camscope import models
from camscope.errors import UsageError
from camscope.models import ModelRecipe, ModelSpec, SpecOverrides, choose_device


def grey_net(outputs: int = 5) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, outputs)
    )


RGB = ModelSpec("m", mean=(0.2, 0.4, 0.6), std=(0.5, 0.5, 0.5), class_names=list("abcde"))


def test_choose_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device() == torch.device("cpu") == choose_device("cpu")
    with pytest.raises(UsageError, match="no CUDA GPU is available; use --device cpu"):
        choose_device("cuda:1")
    with pytest.raises(UsageError, match="unknown device 'gpu'"):
        choose_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device() == torch.device("cuda")
    assert choose_device("cuda", local_rank=3) == torch.device("cuda", 3)  # a DDP rank's GPU
    assert choose_device("cuda:1", local_rank=3) == torch.device("cuda", 1)


def test_overrides_fit_the_channels_the_model_reads(tmp_path: Path) -> None:
    spec, notes = SpecOverrides().apply(grey_net(), RGB)
    assert (spec.channels, spec.mean, spec.std) == (1, (0.4,), (0.5,))
    assert notes == [
        "the model reads 1 channel(s); normalising with mean [0.4] and std [0.5] (pass --mean "
        "and --std to give the model's own)"
    ]
    names = tmp_path / "names.txt"
    names.write_text("\ufeffv\nw\nx\ny\nz\n\n", encoding="utf-8")
    given = SpecOverrides(mean=(0.1,), std=(0.2,), input_size=(40, 30), class_names=names)
    spec, notes = given.apply(grey_net(), RGB)
    assert (spec.mean, spec.std, spec.input_size, notes) == ((0.1,), (0.2,), (40, 30), [])
    assert spec.class_names == list("vwxyz")
    rgb, _ = SpecOverrides(mean=(0.3,)).apply(nn.Conv2d(3, 2, 1), RGB)
    assert rgb.mean == (0.3, 0.3, 0.3) and rgb.channels == 3  # one value for every channel


class GreyToRGB(nn.Module):
    """Takes one channel and repeats it for a first convolution that reads three."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.expand(-1, 3, -1, -1))


def test_channels_the_model_cannot_take_are_refused_by_name() -> None:
    """--channels 1 on a model whose first convolution reads 3 used to fail at the first
    forward with an internal error; a model that takes them anyway (it repeats the channel
    itself) keeps the override."""
    rgb = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    rgb.train()
    with pytest.raises(UsageError, match="--channels 1: the model does not take 1-channel input"):
        SpecOverrides(channels=1).apply(rgb, RGB)
    assert rgb.training and all(m.training for m in rgb.modules())  # modes as they were
    spec, _ = SpecOverrides(channels=1).apply(GreyToRGB(), RGB)
    assert spec.channels == 1 and spec.mean == (0.4,)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (SpecOverrides(mean=(0.1, 0.2)), "--mean has 2 values for a 1-channel model"),
        (SpecOverrides(std=(0.0,)), "--std values must be > 0"),
        (SpecOverrides(std=(float("nan"),)), "finite numbers"),
        (SpecOverrides(class_names=["a", "b"]), "--class-names has 2 names; the model has 5"),
        (SpecOverrides(class_names=Path("/no/such/names.txt")), "file not found"),
        (SpecOverrides(input_size=(0, 4)), "--input-size must be positive"),
    ],
)
def test_overrides_refused(overrides: SpecOverrides, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        overrides.apply(grey_net(), RGB)


def test_a_recipe_loads_on_its_device_with_its_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    def fake(name: str, **kwargs: object) -> tuple[nn.Module, ModelSpec]:
        calls.append({"name": name, **kwargs})
        return grey_net(), RGB

    monkeypatch.setattr(models.loading, "load_model", fake)
    loaded = ModelRecipe("net", random_init=True, device="cpu").load(hints="cli")
    assert loaded.device == torch.device("cpu") and loaded.spec.channels == 1
    assert loaded.notes and "reads 1 channel(s)" in loaded.notes[0]
    assert calls == [
        {"name": "net", "weights": None, "trust_checkpoint": False, "pretrained": False,
         "keep_mode": False, "hints": "cli"}
    ]  # fmt: skip
    fixed = ModelRecipe("net", spec=RGB).load()  # a data-set job's actors: the driver's spec
    assert fixed.spec is RGB and fixed.notes == ()
    with pytest.raises(UsageError, match="exclude each other"):
        ModelRecipe("net", weights="w.pt", random_init=True).load()
