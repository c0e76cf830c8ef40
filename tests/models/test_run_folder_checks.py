"""A run folder and a ``--weights`` file are checked before they become a model (issue 21, item
9): a tampered ``config.json`` names its file and field (a huge image size never reaches the
allocator), and NaN, infinite or integer weights are refused instead of printing ``nan%`` or
being cast silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_data import tiny_run

from camscope import load_model
from camscope.cli.main import main
from camscope.data.synthetic import SyntheticBenchmark
from camscope.errors import ModelLoadError, UsageError
from camscope.models.gapnet import GapNet
from camscope.training import TrainConfig, pretrained

TIMM_NAME = "test_efficientnet"  # timm's tiny test network


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("runs") / "gap")


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "scene.png"
    SyntheticBenchmark(1, size=48, seed=5).__getitem__(0).image.save(path)
    return path


def _copy(run_dir: Path, target: Path, **fields: Any) -> Path:
    shutil.copytree(run_dir, target)
    config = json.loads((target / "config.json").read_text())
    for key, value in fields.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (target / "config.json").write_text(json.dumps(config))  # NaN is written as NaN
    return target


TAMPERED = [
    ({"image_size": 100000}, "image_size", "100000"),  # 23.5 GB per predict before
    ({"image_size": -5}, "image_size", "-5"),
    ({"image_size": 32.5}, "image_size", "32.5"),
    ({"image_size": "32"}, "image_size", "'32'"),
    ({"mean": [0.5]}, "mean", "3 numbers"),
    ({"mean": [0.5, float("nan"), 0.5]}, "mean", "finite"),
    ({"std": [0.2, 0.0, 0.2]}, "std", "> 0"),
    ({"std": "0.2"}, "std", "3 numbers"),
    ({"channels": 1}, "channels", "3-channel"),
    ({"classes": ["cat", "cat", "cup", "rocket"]}, "classes", "'cat' more than once"),
    ({"classes": ["cat"], "num_classes": None}, "classes", "two or more"),
    ({"classes": ["cat", "cup", "rocket"]}, "num_classes", "lists 3 names"),
    ({"arch": "resnet_nonesuch"}, "arch", "cannot build"),
    ({"stem": "giant"}, "stem", "'giant'"),
    ({"interpolation": "lanczos"}, "interpolation", "'lanczos'"),
    ({"arch_options": [1, 2]}, "arch_options", "not an object"),
]


@pytest.mark.parametrize(("fields", "field", "detail"), TAMPERED)
def test_a_tampered_config_names_the_file_and_the_field(
    run_dir: Path, tmp_path: Path, fields: dict[str, Any], field: str, detail: str
) -> None:
    folder = _copy(run_dir, tmp_path / "run", **fields)
    for weights in (True, False):  # --random-init reads the same config
        with pytest.raises(ModelLoadError) as info:
            load_model(str(folder), pretrained=None if weights else False)
        message = str(info.value)
        assert repr(str(folder / "config.json")) in message
        assert f"field {field!r}" in message and detail in message
        assert "restore config.json" in message


def test_classes_that_do_not_match_the_weights_name_both_files(
    run_dir: Path, tmp_path: Path
) -> None:
    folder = _copy(run_dir, tmp_path / "run", classes=["cat", "cup", "rocket"], num_classes=None)
    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder))
    message = str(info.value)
    assert "model.safetensors" in message and "the 3 classes of config.json" in message
    assert "'fc.weight' [4, 4] vs [3, 4]" in message and "different runs" in message


def _tamper_weights(folder: Path, change: Any) -> None:
    file = folder / "model.safetensors"
    save_file({k: change(k, v) for k, v in load_file(str(file)).items()}, str(file))


def _nan_head(key: str, value: torch.Tensor) -> torch.Tensor:
    return torch.full_like(value, float("nan")) if key == "fc.weight" else value


def _int8(key: str, value: torch.Tensor) -> torch.Tensor:
    return value.to(torch.int8) if value.is_floating_point() else value


def test_nan_weights_are_refused_by_load_model_and_predict(
    run_dir: Path, tmp_path: Path, picture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy(run_dir, tmp_path / "nan")
    _tamper_weights(folder, _nan_head)
    with pytest.raises(ModelLoadError, match=r"NaN or infinite values in 'fc.weight'"):
        load_model(str(folder))
    assert main(["predict", str(picture), "--model", str(folder)]) == 2  # was 0, with "nan%"
    captured = capsys.readouterr()
    assert "nan%" not in captured.out
    assert "model.safetensors" in captured.err and "'fc.weight'" in captured.err


def test_integer_weights_are_refused_not_cast(run_dir: Path, tmp_path: Path) -> None:
    folder = _copy(run_dir, tmp_path / "int8")
    _tamper_weights(folder, _int8)
    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder))
    message = str(info.value)
    assert "'fc.weight' is int8 where the model has float32" in message
    assert "floating-point weights only" in message


def test_a_tampered_size_is_a_usage_error_of_predict(
    run_dir: Path, tmp_path: Path, picture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 3000 px, not 100000: were the check to go, this test must not take the machine down
    for name, fields in (("big", {"image_size": 3000}), ("one_mean", {"mean": [0.5]})):
        folder = _copy(run_dir, tmp_path / name, **fields)
        assert main(["predict", str(picture), "--model", str(folder)]) == 2  # was 0 / 1
        err = capsys.readouterr().err
        assert "internal error" not in err and "config.json" in err


def test_train_refuses_an_image_size_a_run_folder_could_not_hold() -> None:
    with pytest.raises(UsageError, match="image size must be from 8 to 2048 px"):
        TrainConfig(data="d", out="o", image_size=100000)


# ------------------------------------------------------------------------ --weights files


def _timm_state() -> dict[str, torch.Tensor]:
    model, _ = load_model(TIMM_NAME, pretrained=False)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def test_weights_files_get_the_same_checks(tmp_path: Path) -> None:
    state = _timm_state()
    head = next(k for k in state if k.endswith("weight") and state[k].is_floating_point())
    broken = dict(state)
    broken[head] = state[head].clone()
    broken[head].view(-1)[3] = float("inf")
    torch.save(broken, tmp_path / "inf.pt")
    with pytest.raises(ModelLoadError) as info:
        load_model(TIMM_NAME, weights=tmp_path / "inf.pt")
    assert repr(str(tmp_path / "inf.pt")) in str(info.value) and repr(head) in str(info.value)
    save_file({k: _int8(k, v) for k, v in state.items()}, str(tmp_path / "int8.safetensors"))
    with pytest.raises(ModelLoadError, match=r"is int8 where the model has float32"):
        load_model(TIMM_NAME, weights=tmp_path / "int8.safetensors")
    save_file(state, str(tmp_path / "good.safetensors"))  # the same file, intact, loads
    model, spec = load_model(TIMM_NAME, weights=tmp_path / "good.safetensors")
    torch.testing.assert_close(model.state_dict()[head], state[head])
    assert spec.source.startswith(f"weights file {tmp_path / 'good.safetensors'}")


def test_a_trusted_whole_module_with_nan_weights_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = GapNet(num_classes=3, width=4, depth=1)
    with torch.no_grad():
        module.fc.bias.fill_(float("nan"))
    torch.save(module, tmp_path / "whole.pt")
    with pytest.raises(ModelLoadError, match=r"NaN or infinite values in 'fc.bias'"):
        load_model(TIMM_NAME, weights=tmp_path / "whole.pt", trust_checkpoint=True)


def test_fine_tuning_from_nan_weights_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = GapNet(num_classes=4, width=6, depth=1).state_dict()
    source["fc.bias"] = torch.full_like(source["fc.bias"], float("nan"))
    save_file({k: v.contiguous() for k, v in source.items()}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(UsageError, match=r"--pretrained .* NaN or infinite values in 'fc.bias'"):
        pretrained.load_matching(
            GapNet(num_classes=4, width=6, depth=1), str(tmp_path / "nan.safetensors")
        )
