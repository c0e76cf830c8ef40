"""camscope.pictures.plan: what each image's files and grid show (titles, scales, layout)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import camscope
from camscope.core.result import Explanation
from camscope.data.dataset import Sample
from camscope.data.inputs import stem_of, unique_stems
from camscope.models import ModelSpec
from camscope.pictures.plan import PictureOptions, plan_image

SPEC = ModelSpec("m", input_size=(4, 4), class_names=["a", "tiger cat", "b", "dog", "c"])
METHODS = ["gradcam", "eigencam", "counterfactual"]


def _result(targets: list[int], raws: list[list[list[float]]]) -> Explanation:
    """One image, K = len(targets) classes, every method with the same raw 2 x 2 maps."""
    raw = torch.tensor([raws], dtype=torch.float32)  # (1, K, 2, 2)
    up = torch.nn.functional.interpolate(raw[0].clamp(min=0)[:, None], size=(4, 4), mode="bilinear")
    flat = up[:, 0].flatten(1)
    maps = ((flat - flat.amin(1, keepdim=True)) / flat.amax(1, keepdim=True)).reshape(1, -1, 4, 4)
    logits = torch.tensor([[0.0, 1.0, -1.0, 3.0, -2.0]])
    probabilities = logits.softmax(1)[:, targets]
    return Explanation(
        maps={m: maps for m in METHODS},
        raw={m: raw for m in METHODS},
        layer="l",
        targets=torch.tensor([targets]),
        scores=logits[:, targets],
        probabilities=probabilities,
        logits=logits,
        layer_maps={"l": {m: maps for m in METHODS}},
        layer_raw={"l": {m: raw for m in METHODS}},
    )


def _plan(result: Explanation, **options: object):
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    return plan_image(
        Sample("a.png", "a.png", stem="a"),
        image,
        result,
        0,
        SPEC,
        METHODS,
        PictureOptions(**options),
    )


def test_topk_rows_titles_and_files() -> None:
    plan = _plan(_result([3, 1], [[[4.0, 0.0], [0.0, 0.0]], [[0.4, 0.0], [0.0, 0.0]]]))
    p = torch.tensor([[0.0, 1.0, -1.0, 3.0, -2.0]]).softmax(1)[0]
    labels = [label for label, _ in plan.grid_rows]
    assert labels == [f"top-1: dog, p = {p[3]:.2f}", f"top-2: tiger cat, p = {p[1]:.2f}"]
    first = [panel.title for panel in plan.grid_rows[0][1]]
    assert first == [
        "gradcam",
        "eigencam\n(class-agnostic, same for every class)",
        "counterfactual\n(evidence against dog)",
    ]
    second = plan.grid_rows[1][1]
    assert second[1] is None  # Eigen-CAM is drawn once; its column stays free
    assert second[2].title == "counterfactual\n(evidence against tiger cat)"
    names = [picture.name for picture in plan.pictures]
    assert names == [
        "a.gradcam.3.png",
        "a.gradcam.1.png",
        "a.eigencam.png",
        "a.counterfactual.3.png",
        "a.counterfactual.1.png",
    ]
    assert "share one scale" in plan.heat_legend
    assert plan.record["targets"][1]["label"] == "tiger cat"


def test_topk_classes_share_one_scale_by_default() -> None:
    result = _result([3, 1], [[[4.0, 0.0], [0.0, 0.0]], [[0.4, 0.0], [0.0, 0.0]]])
    shared = _plan(result).pictures
    # the weak class's map peaks at a tenth of the strong one's (bilinear keeps corner values)
    assert shared[0].heat.max() == pytest.approx(1.0)
    assert shared[1].heat.max() == pytest.approx(0.1)
    own = _plan(result, class_scale="own").pictures
    assert own[1].heat.max() == pytest.approx(1.0)  # each map on its own: looks as hot
    np.testing.assert_allclose(own[1].heat, result.maps["gradcam"][0, 1].numpy())


def _single_target_result() -> Explanation:
    """``_result`` for the one class 3 without the class axis (as ``targets=3`` explains)."""
    result = _result([3], [[[1.0, 0.0], [0.0, 2.0]]])
    result.targets = result.targets[:, 0]
    result.probabilities = result.probabilities[:, 0]
    for key in list(result.maps):
        result.maps[key] = result.maps[key][:, 0]
        result.raw[key] = result.raw[key][:, 0]
    return result


def test_single_target_titles() -> None:
    result = _single_target_result()
    result.layer_maps = {"l": dict(result.maps)}
    result.layer_raw = {"l": dict(result.raw)}
    plan = _plan(result)
    ((label, panels),) = plan.grid_rows
    assert label.startswith("target: dog, p = ")
    assert [panel.title for panel in panels][1:] == [
        "eigencam\n(class-agnostic)",
        "counterfactual\n(evidence against dog)",
    ]
    assert [picture.name for picture in plan.pictures] == [
        "a.gradcam.png",
        "a.eigencam.png",
        "a.counterfactual.png",
    ]


def test_a_method_skipped_at_one_layer_says_where_its_map_comes_from() -> None:
    result = _single_target_result()
    result.layer = ["l", "m"]
    result.layer_maps = {"l": {"gradcam": result.maps["gradcam"]}, "m": dict(result.maps)}
    result.layer_raw = {"l": {"gradcam": result.raw["gradcam"]}, "m": dict(result.raw)}
    result.skipped = {"eigencam@l": "why", "counterfactual@l": "why"}
    plan = _plan(result)
    labels = [label for label, _ in plan.grid_rows]
    assert labels[:2] == ["layer l", "layer m"] and labels[2].startswith("target: dog")
    assert [panel.title for panel in plan.grid_rows[2][1]] == [
        "gradcam",
        "eigencam\n(class-agnostic)\n(layer m only)",
        "counterfactual\n(evidence against dog)\n(layer m only)",
    ]


def test_sigmoid_heads_are_titled_and_ranked_by_their_sigmoid() -> None:
    """A single-logit model: top-5 and titles come from Explanation.class_probabilities()
    (``[1 - p, p]``), not from a softmax over one logit (which says p = 1.00)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(2, 1),
    )
    with torch.no_grad():
        net[4].bias.fill_(-1.0)  # logit about -1: the negative class is the more probable
    x = torch.rand(1, 3, 4, 4)
    result = camscope.explain(net, x, ["gradcam"], "0", "top2")
    with torch.no_grad():
        p = float(torch.sigmoid(net(x))[0, 0])
    spec = ModelSpec("m", input_size=(4, 4), class_names=["healthy", "nodule"])
    image = Image.new("RGB", (4, 4))
    options = PictureOptions()
    plan = plan_image(
        Sample("a.png", "a.png", stem="a"), image, result, 0, spec, ["gradcam"], options
    )
    top5 = plan.record["top5"]
    assert [entry["class"] for entry in top5] == [0, 1]
    assert [entry["probability"] for entry in top5] == pytest.approx([1 - p, p])
    assert plan.record["probability_kind"] == "sigmoid"
    assert plan.grid_rows[0][0] == f"top-1: healthy, p = {1 - p:.2f} (sigmoid)"


def test_stems_keep_unicode_and_stay_safe() -> None:
    assert stem_of("/photos/café latte.jpg") == "café latte"
    assert stem_of("C:\\x\\Übersicht 2024.PNG") == "Übersicht 2024"
    assert stem_of("/x/a\x1b[31m\nb.png") == "a_[31m_b"
    assert stem_of("https://h/p/%E7%8C%AB.png?x=1") == "猫"
    assert stem_of("/x/scan.nii.gz") == "scan"
    assert stem_of("/x/.hidden") == "hidden"
    assert stem_of("/x/a:b*c?.png") == "a_b_c_"
    long = stem_of("/x/" + "é" * 300 + ".png")
    assert len(long.encode("utf-8")) <= 120 and set(long) == {"é"}
    assert unique_stems(["Café", "café", "CAFÉ"]) == ["Café", "café-2", "CAFÉ-3"]
