"""``camscope adversarial`` end to end on a tiny model: the saved adversarial input is classified as
reported, 8-bit rounding, boxes give the pointing game, bad inputs exit 1, usage errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import patch_loader
from nets import imagenet_sized
from PIL import Image

from camscope.cli.main import main
from camscope.diagnosis.attacks import pixel_forward
from camscope.models import ModelSpec

SPEC = ModelSpec(
    name="tiny",
    input_size=(32, 32),
    mean=(0.4, 0.5, 0.6),
    std=(0.2, 0.25, 0.3),
    class_names=[f"c{i}" for i in range(1000)],
)


@pytest.fixture
def model(monkeypatch):
    net = imagenet_sized()
    patch_loader(monkeypatch, net, SPEC)
    return net


def photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)


def test_the_saved_adversarial_input_is_classified_as_reported(tmp_path, model, capsys) -> None:
    photo(tmp_path / "a.png", 1)
    photo(tmp_path / "b.png", 2)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "adv"
    args = [
        "adversarial",
        str(tmp_path / "a.png"),
        str(tmp_path / "broken.png"),
        str(tmp_path / "b.png"),
    ]
    code = main(
        [
            *args,
            "--attack",
            "pgd",
            "--eps",
            "8/255",
            "--steps",
            "5",
            "--out",
            str(out),
            "--layer",
            "4",
        ]
    )
    assert code == 1  # the broken file was skipped, the others went on
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err
    summary = json.loads((out / "adversarial.json").read_text())
    assert [e["path"].split("/")[-1] for e in summary["errors"]] == ["broken.png"]
    assert len(summary["images"]) == 2
    forward = pixel_forward(model, SPEC.mean, SPEC.std)
    for rec in summary["images"]:
        adv = np.load(out / f"{rec['stem']}.adv.npy")
        assert adv.dtype == np.float32 and adv.shape == (32, 32, 3)
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        with torch.no_grad():
            probs = forward(torch.from_numpy(adv).permute(2, 0, 1)[None]).softmax(1)[0]
        assert int(probs.argmax()) == rec["adversarial_class"]
        assert float(probs[rec["adversarial_class"]]) == pytest.approx(
            rec["adversarial_probability"], abs=1e-5
        )
        assert float(probs[rec["clean_class"]]) == pytest.approx(
            rec["original_probability_adversarial"], abs=1e-5
        )
        assert rec["success"] == (rec["adversarial_class"] != rec["clean_class"])
        # the PNG is the 8-bit rounding of the same input, classified as success_8bit says
        png = np.asarray(Image.open(out / f"{rec['stem']}.adv.png"), dtype=np.float32) / 255
        assert np.abs(png - adv).max() <= 0.5 / 255 + 1e-6
        with torch.no_grad():
            c8 = int(forward(torch.from_numpy(png).permute(2, 0, 1)[None]).argmax())
        assert c8 == rec["adversarial_class_8bit"]
        # inside the budget around the clean 8-bit input at the model's size
        assert rec["linf"] <= 8.0 + 1e-3
        assert -1 <= rec["similarity"]["spearman"] <= 1 and 0 <= rec["similarity"]["top15_iou"] <= 1
        assert (out / f"{rec['stem']}.adversarial.png").is_file()
    assert summary["success_rate"] == np.mean([r["success"] for r in summary["images"]])


def test_targeted_attack_on_annotated_data_gives_the_pointing_game(tmp_path, model) -> None:
    out = tmp_path / "adv"
    code = main([
        "adversarial", "builtin:2", "--attack", "fgsm", "--eps", "4/255", "--target", "c7",
        "--out", str(out), "--layer", "4", "--no-progress", "--method", "gradcam,eigencam",
    ])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "adversarial.json").read_text())
    assert summary["settings"]["target"] == 7 and summary["settings"]["steps"] == 1
    for rec in summary["images"]:
        assert rec["success"] == (rec["adversarial_class"] == 7)
        assert isinstance(rec["similarity"]["pointing_clean"], bool)
        assert isinstance(rec["similarity"]["pointing_adversarial"], bool)
        assert set(rec["similarity_by_method"]) == {"gradcam", "eigencam"}
        assert rec["similarity_by_method"]["gradcam"] == rec["similarity"]
    assert summary["similarity"]["pointing_clean"] is not None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "0"], "in (0, 1]"),
        (["--eps", "two"], "fraction"),
        (["--target", "no such class"], "--target"),
        (["--target", "top5"], "one class"),
        (["--method", "nope"], "unknown method"),
        (["--layer", "fc9"], "fc9"),
    ],
)
def test_usage_errors(tmp_path, model, capsys, extra, message) -> None:
    photo(tmp_path / "a.png", 1)
    code = main(["adversarial", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
