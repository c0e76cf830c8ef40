"""``camscope failures`` end to end on a colour classifier: the mislabelled image is found, bad
inputs are skipped with exit code 1, names are escaped in the report, usage errors exit 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import patch_loader
from PIL import Image
from torch import nn

from camscope.cli.main import main
from camscope.models import ModelSpec

# A class name with HTML in it: the report must escape it.
CLASSES = ["red&<i>", "blue", "green"]


class ColourNet(nn.Module):
    """Identity 1x1 conv ("conv") -> ReLU -> mean -> logits (R - B, B - R, G - R / 2 - B / 2)
    of the channel means: a red square is "red&<i>", a blue one "blue"."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[1.0, 0, -1], [-1, 0, 1], [-0.5, 1, -0.5]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture
def patched(monkeypatch):
    spec = ModelSpec(
        name="colours", input_size=(16, 16), mean=(0, 0, 0), std=(1, 1, 1), class_names=CLASSES
    )
    model = ColourNet().eval()
    patch_loader(monkeypatch, model, spec)
    return model


def square(path: Path, colour: tuple[int, int, int], corner: int) -> None:
    """A 16 x 16 (the input size: no resizing) black picture with an 8 px square of ``colour``."""
    arr = np.zeros((16, 16, 3), dtype=np.uint8)
    arr[corner : corner + 8, corner : corner + 8] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    square(root / "red&<i>" / "r1.png", (255, 0, 0), 2)
    square(root / "red&<i>" / "r2.png", (200, 0, 0), 7)
    square(root / "red&<i>" / "oops.png", (0, 0, 255), 8)  # mislabelled: a blue square
    square(root / "blue" / "b1.png", (0, 0, 255), 3)
    square(root / "blue" / "b2.png", (0, 0, 180), 6)
    square(root / "green" / "yellow.png", (255, 255, 0), 8)  # ambiguous: red and green evidence
    (root / "blue" / "broken.png").write_bytes(b"not a png")
    square(root / "purple" / "p1.png", (255, 0, 255), 4)  # names no class of the model
    return root


def test_the_mislabelled_image_is_found(tmp_path, folders, patched, capsys) -> None:
    out = tmp_path / "out"
    code = main(["failures", "--data", str(folders), "--out", str(out), "--layer", "conv"])
    assert code == 1  # the broken file and the purple folder were skipped, the rest went on
    err = capsys.readouterr().err
    assert "broken.png" in err and "purple" in err and "Traceback" not in err
    summary = json.loads((out / "failures.json").read_text())
    assert summary["classified"] == 6 and summary["accuracy"] == pytest.approx(4 / 6)
    oops, yellow = summary["failures"]  # most confident mistake first: 0.436 > 0.402
    assert oops["path"].endswith("oops.png") and yellow["path"].endswith("yellow.png")
    assert oops["true_label"] == "red&<i>" and oops["predicted_label"] == "blue"
    assert oops["true_rank"] == 3  # blue 0.25, green -0.125, red -0.25
    # logits of a blue square covering 64 of 256 pixels: (-0.25, 0.25, -0.125)
    probs = torch.tensor([-0.25, 0.25, -0.125]).softmax(0)
    assert oops["predicted_probability"] == pytest.approx(float(probs[1]), abs=1e-5)
    assert oops["true_probability"] == pytest.approx(float(probs[0]), abs=1e-5)
    assert [t["label"] for t in oops["top5"]] == ["blue", "green", "red&<i>"]
    # Grad-CAM at "conv": channel weights mean(dlogit/dA) = W[c, k] * (64 / 256) / 256 where the
    # channel is non-zero. "blue": +B on the square; "red": -B, all zero after the ReLU. The top
    # 15% (38 pixels, ties in raster order) are the square's first 38 vs the image's first 38:
    # no pixel in common.
    assert oops["overlap"] == 0.0
    # yellow: logits (0.25, -0.25, 0.125) -> "red" (p 0.402) over the true "green"; the red map
    # is +R, the green one G - R / 2 = +R / 2: the same square, overlap 1 (one ambiguous object)
    assert yellow["predicted_label"] == "red&<i>" and yellow["true_label"] == "green"
    assert yellow["true_rank"] == 2 and yellow["overlap"] == 1.0
    probs = torch.tensor([0.25, -0.25, 0.125]).softmax(0)
    assert yellow["predicted_probability"] == pytest.approx(float(probs[0]), abs=1e-5)
    assert (out / oops["grid"]).is_file()
    assert {e["path"].split("/")[-1] for e in summary["errors"]} == {"broken.png", "p1.png"}
    assert summary["per_class"]["red&<i>"] == {"images": 3, "correct": 2, "accuracy": 2 / 3}
    with (out / "per_class.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["class"] for r in rows] == ["blue", "green", "red&<i>"]
    assert (out / "confusion.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "red&amp;&lt;i&gt;" in html and "red&<i>" not in html
    assert html.count("data:image/png;base64") == 1  # the confusion matrix
    assert html.count("data:image/jpeg;base64") == 2  # the two grids
    assert html.index("oops.png") < html.index("yellow.png")


def test_annotated_data_and_usage_errors(tmp_path, patched, capsys) -> None:
    images = tmp_path / "ann"
    square(images / "a.png", (255, 0, 0), 1)
    square(images / "b.png", (0, 0, 255), 1)
    (images / "boxes.csv").write_text("a.png,red&<i>,1,1,9,9\nb.png,red&<i>,1,1,9,9\n")
    out = tmp_path / "out"
    assert main(["failures", "--data", str(images), "--out", str(out), "--layer", "conv"]) == 0
    summary = json.loads((out / "failures.json").read_text())
    assert [f["path"].split("/")[-1] for f in summary["failures"]] == ["b.png"]
    capsys.readouterr()
    assert main(["failures", "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["failures", "--data", str(images), "--method", "nope", "--out", str(out)]) == 2
    assert main(["failures", "--data", str(images), "--layer", "fc9", "--out", str(out)]) == 2
    only_purple = tmp_path / "purple"
    square(only_purple / "purple" / "p.png", (255, 0, 255), 1)
    assert main(["failures", "--data", str(only_purple), "--out", str(out)]) == 2
    assert "names a class" in capsys.readouterr().err


class SignNet(nn.Module):
    """A single-logit (sigmoid) model: logit = mean(R) - mean(B) after an identity conv ("conv").
    Its classes are 0 = "blue" (score -logit) and 1 = "red" (score +logit), as in explain()."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = torch.relu(self.conv(x)).mean((2, 3))
        return (means[:, 0] - means[:, 2])[:, None]


def test_a_single_logit_model(tmp_path, monkeypatch) -> None:
    spec = ModelSpec(
        name="sign", input_size=(16, 16), mean=(0, 0, 0), std=(1, 1, 1), class_names=["blue", "red"]
    )
    model = SignNet().eval()
    patch_loader(monkeypatch, model, spec)
    root = tmp_path / "data"
    square(root / "red" / "r.png", (255, 0, 0), 2)
    square(root / "red" / "oops.png", (0, 0, 255), 4)  # mislabelled
    square(root / "blue" / "b.png", (0, 0, 255), 6)
    out = tmp_path / "out"
    assert main(["failures", "--data", str(root), "--out", str(out), "--layer", "conv"]) == 0
    summary = json.loads((out / "failures.json").read_text())
    (oops,) = summary["failures"]
    # logit of a blue square on 64 of 256 pixels: -0.25; p(red) = sigmoid(-0.25)
    assert oops["predicted_label"] == "blue" and oops["true_label"] == "red"
    p_red = float(torch.sigmoid(torch.tensor(-0.25)))
    assert oops["true_probability"] == pytest.approx(p_red, abs=1e-6)
    assert oops["predicted_probability"] == pytest.approx(1 - p_red, abs=1e-6)
    assert oops["true_rank"] == 2 and [t["label"] for t in oops["top5"]] == ["blue", "red"]
    # the red class's map (+R - B) has no positive evidence on a blue square: overlap 0
    assert oops["overlap"] == 0.0


@pytest.mark.slow
def test_a_run_folder_is_a_model(tmp_path, capsys) -> None:
    # One epoch of camscope train on two class folders. Every test image is put under both
    # folder names, so whatever the model predicts, exactly one copy of each is a mistake.
    import shutil

    from tiny_data import tiny_run, write_image_folder

    images = write_image_folder(tmp_path / "train", per_class=4)
    run = tiny_run(tmp_path / "run", str(images), image_size=16, batch_size=4)
    test = tmp_path / "test"
    for folder in ("ant", "bee"):
        for source in ("ant", "bee"):
            for path in (images / source).glob("*.png"):
                (test / folder).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, test / folder / f"{source}-{path.name}")
    out = tmp_path / "out"
    argv = ["failures", "--model", str(run), "--data", str(test), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    summary = json.loads((out / "failures.json").read_text())
    assert summary["classified"] == 16 and len(summary["failures"]) == 8
    assert set(summary["per_class"]) == {"ant", "bee"}
    for failure in summary["failures"]:
        assert {failure["true_label"], failure["predicted_label"]} == {"ant", "bee"}
        # each is rounded to 6 decimals: their sum is 1 within one unit of the 6th decimal
        total = failure["true_probability"] + failure["predicted_probability"]
        assert total == pytest.approx(1, abs=1.000001e-6)
        assert (out / failure["grid"]).is_file()
    adv = tmp_path / "adv"
    picture = str(test / "ant" / "ant-000.png")
    argv = ["adversarial", picture, "--model", str(run), "--attack", "fgsm", "--out", str(adv)]
    assert main([*argv, "--eps", "8/255", "--no-progress"]) == 0
    (record,) = json.loads((adv / "adversarial.json").read_text())["images"]
    assert record["clean_label"] in {"ant", "bee"} and (adv / "ant-000.adv.npy").is_file()
