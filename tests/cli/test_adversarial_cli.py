"""``camscope adversarial`` end to end on a tiny model: the saved adversarial input is classified as
reported, 8-bit rounding, boxes give the pointing game, bad inputs exit 1, usage errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
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


def clean_inputs(spec: ModelSpec) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``builtin:2`` at the model's size as the command reads it: the 8-bit clean input in
    [0, 1] and the object boxes, per image."""
    from camscope.data.read import read_data
    from camscope.data.spec import DataOptions
    from camscope.diagnosis.adversarial import unit_image

    data = read_data("builtin:2", spec.class_names, DataOptions(), seed=0, size=32)
    prepared = [(it, it.prepare(spec)) for it in data.items]
    return [(unit_image(p.x, spec)[0], p.scaled(it.object_boxes)) for it, p in prepared]


def points_inside(heat: torch.Tensor, boxes: torch.Tensor) -> bool:
    """Pointing game at tolerance 0, by hand: the centre of the map's (first) maximum lies in a
    box; an empty map points nowhere."""
    if not heat.max() > 0:
        return False
    row, col = divmod(int(heat.flatten().argmax()), heat.shape[1])
    return any(x0 <= col + 0.5 <= x1 and y0 <= row + 0.5 <= y1 for x0, y0, x1, y1 in boxes.tolist())


def test_targeted_attack_on_annotated_data_gives_the_pointing_game(tmp_path, model) -> None:
    from camscope import explain

    out = tmp_path / "adv"
    code = main([
        "adversarial", "builtin:2", "--attack", "fgsm", "--eps", "4/255", "--target", "c7",
        "--out", str(out), "--layer", "4", "--no-progress", "--method", "gradcam,eigencam",
        "--tolerance", "0",
    ])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "adversarial.json").read_text())
    assert summary["settings"]["target"] == 7 and summary["settings"]["steps"] == 1
    forward = pixel_forward(model, SPEC.mean, SPEC.std)
    normalise = T.Normalize(SPEC.mean, SPEC.std)
    hits = []
    for rec, (clean, boxes) in zip(summary["images"], clean_inputs(SPEC), strict=True):
        adv = torch.from_numpy(np.load(out / f"{rec['stem']}.adv.npy")).permute(2, 0, 1)
        # the attack moved the input, inside the L-infinity budget
        distance = float((adv - clean).abs().max())
        assert 0 < distance <= 4 / 255 + 1e-6 and rec["linf"] == pytest.approx(
            255 * distance, abs=1e-3
        )
        with torch.no_grad():
            before, after = int(forward(clean[None]).argmax()), int(forward(adv[None]).argmax())
        assert (rec["clean_class"], rec["adversarial_class"]) == (before, after)
        assert rec["success"] == (after == 7) and rec["already_target"] is (before == 7)
        if rec["success"]:
            assert after != before  # a success is a changed prediction
        # the pointing game of the original class's map, clean and attacked, worked by hand
        for key, image in (("pointing_clean", clean), ("pointing_adversarial", adv)):
            heat = explain(model, normalise(image)[None], "gradcam", "4", before).maps["gradcam"][0]
            assert rec["similarity"][key] is points_inside(heat, boxes), key
            hits.append(rec["similarity"][key])
        assert set(rec["similarity_by_method"]) == {"gradcam", "eigencam"}
        assert rec["similarity_by_method"]["gradcam"] == rec["similarity"]
    assert summary["similarity"]["pointing_clean"] == np.mean(hits[0::2])
    assert summary["similarity"]["pointing_adversarial"] == np.mean(hits[1::2])


def test_images_already_of_the_target_class_are_no_successes(tmp_path, model, capsys) -> None:
    """A targeted attack counts as a success only where the class had to change."""
    out = tmp_path / "first"
    assert main(["adversarial", "builtin:2", "--layer", "4", "--out", str(out)]) == 0
    first = json.loads((out / "adversarial.json").read_text())["images"]
    goal = first[0]["clean_class"]
    capsys.readouterr()
    out = tmp_path / "adv"
    code = main([
        "adversarial", "builtin:2", "--attack", "pgd", "--eps", "8/255", "--target", str(goal),
        "--out", str(out), "--layer", "4",
    ])  # fmt: skip
    assert code == 0
    stdout = capsys.readouterr().out
    summary = json.loads((out / "adversarial.json").read_text())
    flagged = [r for r in summary["images"] if r["already_target"]]
    assert flagged and all(r["clean_class"] == goal for r in flagged)
    assert all(r["success"] is None and r["success_8bit"] is None for r in flagged)
    counted = [r["success"] for r in summary["images"] if not r["already_target"]]
    assert summary["already_target"] == len(flagged)
    assert summary["success_rate"] == (np.mean(counted) if counted else None)
    assert f"{len(flagged)} image(s) already the target class, not counted" in stdout


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
