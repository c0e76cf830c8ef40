"""What a model's spec says about where it came from (issue 21, item 12): random weights say so,
a model whose preprocessing is the ImageNet fallback is told so on stderr with the flags that
override it, and ``torchvision:NAME`` is documented where model names are."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from camscope.cli.main import main
from camscope.models import load_model
from camscope.models.spec import guessed_preprocessing

ROOT = Path(__file__).resolve().parents[2]
TV_NAME = "shufflenet_v2_x0_5"  # torchvision-only, small
FACTORIES = textwrap.dedent(
    """
    import torch
    from torch import nn
    from camscope.models import ModelSpec

    def plain():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
        )

    def with_spec():
        return plain(), ModelSpec("own", input_size=(32, 32), mean=(0.5,) * 3, std=(0.2,) * 3)
    """
)
FALLBACK = "using the ImageNet fallback: mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]"


@pytest.fixture
def factories(tmp_path: Path) -> Path:
    source = tmp_path / "camscope_source_factories.py"
    source.write_text(FACTORIES)
    return source


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "pic.png"
    Image.new("RGB", (40, 30), (120, 80, 40)).save(path)
    return path


def test_random_init_says_random_init(no_network: None, capsys: pytest.CaptureFixture[str]) -> None:
    _, spec = load_model(f"torchvision:{TV_NAME}", pretrained=False)
    assert spec.source == (
        "random initialisation (preprocessing from torchvision weights "
        "ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1)"
    )
    _, default = load_model("efficientnet_lite0", pretrained=False)
    assert default.source.startswith("random initialisation (preprocessing from ")
    assert main(["layers", f"torchvision:{TV_NAME}", "--random-init"]) == 0
    lines = capsys.readouterr().out.splitlines()
    source = next(line.strip() for line in lines if line.strip().startswith("source:"))
    assert source.startswith("source: random initialisation (preprocessing from torchvision")


def test_models_that_bring_their_weights_keep_their_source(factories: Path) -> None:
    # a factory decides its own weights: pretrained=False does not make them random
    _, spec = load_model(f"{factories}:plain", pretrained=False)
    assert spec.source == "ImageNet defaults" and guessed_preprocessing(spec)
    _, spec = load_model(f"{factories}:with_spec")
    assert not guessed_preprocessing(spec)


def test_a_fallback_preprocessing_is_said_once_with_the_flags(
    factories: Path, picture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(picture), "--model", f"{factories}:plain"]) == 0
    err = capsys.readouterr().err
    assert err.count(FALLBACK) == 1, err
    assert "224x224 bilinear" in err and "--mean and --std" in err
    # the model's own values given: nothing to say
    given = ["--mean", "0.5", "--std", "0.25"]
    assert main(["predict", str(picture), "--model", f"{factories}:plain", *given]) == 0
    assert "fallback" not in capsys.readouterr().err
    # a spec from the factory is the model's own
    assert main(["predict", str(picture), "--model", f"{factories}:with_spec"]) == 0
    assert "fallback" not in capsys.readouterr().err
    # a whole pickled model carries no preprocessing either
    torch.manual_seed(0)
    whole = tmp_path / "whole.pt"
    model, _ = load_model(f"{factories}:plain")
    torch.save(model, whole)
    args = ["predict", str(picture), "--model", str(whole), "--trust-checkpoint"]
    assert main(args) == 0
    assert capsys.readouterr().err.count(FALLBACK) == 1
    # explain says it too
    out = tmp_path / "maps"
    args = ["explain", str(picture), "--model", f"{factories}:plain", "-m", "gradcam"]
    assert main([*args, "--out", str(out)]) == 0
    assert capsys.readouterr().err.count(FALLBACK) == 1


def test_the_fallback_note_names_the_input_size_in_use(
    factories: Path, picture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--input-size alone leaves the fallback mean/std to say, at the size actually used."""
    args = ["predict", str(picture), "--model", f"{factories}:plain", "--input-size", "48"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count(FALLBACK) == 1 and "48x48 bilinear" in err and "224x224" not in err, err


def test_a_hugging_face_folder_without_a_processor_config_says_so_once(
    tmp_path: Path, picture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")  # the optional extra camscope[hf]
    from nets import tiny_hf_vit

    torch.manual_seed(0)
    tiny_hf_vit(labels=["cat", "dog", "fox"]).save_pretrained(tmp_path / "vit")
    _, spec = load_model(str(tmp_path / "vit"))
    assert guessed_preprocessing(spec) and "no preprocessor_config.json" in spec.source
    assert spec.input_size == (64, 64)  # the model's config.json image_size, not 224 (an error)
    assert main(["predict", str(picture), "--model", str(tmp_path / "vit")]) == 0
    err = capsys.readouterr().err
    assert err.count("ImageNet") == 1 and FALLBACK in err, err


def test_torchvision_names_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("explain", "predict", "layers"):
        assert main([command, "--help"]) == 0
        help_text = " ".join(capsys.readouterr().out.split())
        assert "torchvision:NAME" in help_text and "timm:NAME" in help_text, command
    families = (ROOT / "docs" / "families.md").read_text()
    assert "`torchvision:NAME`" in families and "`timm:NAME`" in families
    # and what the docs promise works: the name both libraries know goes where it says
    model, spec = load_model("torchvision:resnet18", pretrained=False)
    assert type(model).__module__.startswith("torchvision.models")
    model, _ = load_model("timm:resnet18", pretrained=False)
    assert type(model).__module__.startswith("timm.models")
    assert "torchvision weights" in spec.source
