"""Robustness metrics: values by hand, a linear model in closed form, Quantus given the same noise,
and the ``robustness`` family of ``camscope evaluate``."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from nets import SmallNet, imagenet_sized, ramp
from torch import Tensor, nn

from camscope import explain
from camscope.errors import UsageError
from camscope.metrics import robustness as rm


def test_sensitivity_and_lipschitz_by_hand() -> None:
    a = torch.tensor([[[3.0, 4.0]]])  # ||a|| = 5
    noisy = torch.tensor([[[[3.0, 0.0]], [[3.0, 3.0]], [[0.0, 4.0]]]])  # differences 4, 1, 3
    assert rm.sensitivities(a, noisy)[0].tolist() == pytest.approx([0.8, 0.2, 0.6])
    assert float(rm.max_sensitivity(a, noisy)[0]) == pytest.approx(0.8)
    assert float(rm.avg_sensitivity(a, noisy)[0]) == pytest.approx(1.6 / 3)
    deltas = torch.tensor([[[2.0, 0.0], [0.0, 0.5], [0.0, 0.0]]])  # ||delta|| = 2, 0.5, 0
    ratios = rm.lipschitz_ratios(a, noisy, deltas)
    assert ratios[0, :2].tolist() == pytest.approx([2.0, 2.0])
    assert float(ratios[0, 2]) == pytest.approx(3.0 / 1e-10, rel=1e-6)  # Quantus' epsilon
    # an all-zero map has no relative sensitivity
    assert math.isnan(float(rm.max_sensitivity(torch.zeros(1, 1, 2), noisy)[0]))


def test_top_regions_topk_and_centre_of_mass_by_hand() -> None:
    a = torch.tensor([[[4.0, 3.0, 2.0, 1.0]]])
    b = torch.tensor([[[1.0, 3.0, 4.0, 2.0]]])
    assert float(rm.top_region_iou(a, b, 0.5)[0]) == pytest.approx(1 / 3)
    assert float(rm.top_region_iou(a, a)[0]) == 1.0
    # only pixels with evidence: a map with one positive pixel has a one-pixel region
    c = torch.tensor([[[0.0, 0.0, 5.0, 0.0]]])
    assert float(rm.top_region_iou(b, c, 0.5)[0]) == pytest.approx(1 / 2)  # {1, 2} vs {2}
    assert float(rm.top_region_iou(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4))[0]) == 0.0
    # ties keep raster order: the first two of four equal pixels
    assert rm.top_fraction_mask(torch.ones(1, 1, 4), 0.5).tolist() == [[[True, True, False, False]]]
    assert rm.topk_intersection(a, b[:, None], 0.5).tolist() == [[0.5]]
    m = torch.zeros(1, 3, 3)
    m[0, 0, 0], m[0, 2, 2] = 1.0, 3.0  # mass at pixel centres (0.5, 0.5) and (2.5, 2.5)
    assert rm.centre_of_mass(m)[0].tolist() == pytest.approx([2.0, 2.0])
    moved = torch.zeros(1, 1, 3, 3)
    moved[0, 0, 2, 0] = 1.0  # (2.5, 0.5)
    assert float(rm.centre_shift(m, moved)[0, 0]) == pytest.approx(math.hypot(0.5, 1.5))
    assert math.isnan(float(rm.centre_of_mass(torch.zeros(1, 2, 2))[0, 0]))


def test_uniform_noise_bounds_and_per_image_seeds() -> None:
    noise = rm.uniform_noise((3, 8, 8), 4, 0.05, [7, 9])
    assert noise.shape == (2, 4, 3, 8, 8) and float(noise.abs().max()) <= 0.05
    assert float(noise.abs().max()) > 0.04  # fills the ball
    alone = rm.uniform_noise((3, 8, 8), 4, 0.05, [9])
    assert torch.equal(alone[0], noise[1])  # independent of the batch it is drawn in
    with pytest.raises(UsageError, match="radius"):
        rm.uniform_noise((3, 8, 8), 4, -1.0, [1])


def linear_net() -> nn.Module:
    """Identity 1x1 conv ("conv"), logit 0 = sum of the pixels: Grad-CAM at "conv" is the input
    itself, so the map of a ramp 0..15 is ramp / 15."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    head = nn.Linear(16, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        head.weight.copy_(torch.stack([torch.ones(16), -torch.ones(16)]))
    return nn.Sequential(OrderedDict([("conv", conv), ("flat", nn.Flatten()), ("head", head)]))


def test_closed_form_on_a_linear_model() -> None:
    # Noise 1: +0.5 at pixel (1, 2) (value 6); noise 2: -0.25 at (2, 1) (value 9). Neither moves
    # the min (0) or the max (15), so the noisy map is (ramp + delta) / 15: the map changes by
    # |delta| / 15 at one pixel, and ||a|| = sqrt(0^2 + ... + 15^2) / 15 = sqrt(1240) / 15.
    net, x = linear_net().eval(), ramp()
    deltas = torch.zeros(1, 2, 1, 4, 4)
    deltas[0, 0, 0, 1, 2], deltas[0, 1, 0, 2, 1] = 0.5, -0.25

    def explain_fn(inputs: Tensor, classes: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        r = explain(net, inputs, "gradcam", "conv", classes)
        return r.maps, r.logits.argmax(1)

    clean = explain(net, x, "gradcam", "conv", 0).maps
    torch.testing.assert_close(clean["gradcam"][0], x[0, 0] / 15)
    top1 = torch.tensor([0])
    got = rm.robustness_scores(
        explain_fn, x, clean, torch.tensor([0]), top1, deltas, batch_size=1, topk_fraction=0.25
    )["gradcam"]
    root = math.sqrt(1240)
    assert float(got["max_sensitivity"][0]) == pytest.approx(0.5 / root, rel=1e-5)
    assert float(got["avg_sensitivity"][0]) == pytest.approx(0.375 / root, rel=1e-5)
    assert float(got["lipschitz"][0]) == pytest.approx(1 / 15, rel=1e-5)
    assert float(got["topk_intersection"][0]) == 1.0  # the top 4 (12..15) stay
    # centre of mass (scale-free, so of the ramp itself): total 120, row sums 6, 22, 38, 54,
    # column sums 24, 28, 32, 36, pixel centres at 0.5 .. 3.5
    centres = torch.tensor([0.5, 1.5, 2.5, 3.5], dtype=torch.float64)
    row_sums = torch.tensor([6.0, 22, 38, 54], dtype=torch.float64)
    col_sums = torch.tensor([24.0, 28, 32, 36], dtype=torch.float64)
    com = torch.stack([(centres * row_sums).sum(), (centres * col_sums).sum()]) / 120
    shifts = []
    for pixel, d in (((1, 2), 0.5), ((2, 1), -0.25)):
        pos = torch.tensor([pixel[0] + 0.5, pixel[1] + 0.5], dtype=torch.float64)
        shifts.append(float(((com * 120 + d * pos) / (120 + d) - com).norm()))
    assert float(got["com_shift"][0]) == pytest.approx(sum(shifts) / 2, rel=1e-4)
    assert float(got["kept"][0]) == 1.0


def test_copies_that_change_the_prediction_count_only_for_sensitivity() -> None:
    maps = {"m": torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])}
    # explain_fn: copy 0 keeps class 0 with the same map, copy 1 flips to class 1 with a far map
    outs = [torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])]
    calls = iter(range(2))

    def explain_fn(inputs: Tensor, classes: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        i = next(calls)
        return {"m": outs[i]}, torch.tensor([i])

    x = torch.zeros(1, 1, 2, 2)
    got = rm.robustness_scores(
        explain_fn,
        x,
        maps,
        torch.tensor([0]),
        torch.tensor([0]),
        torch.zeros(1, 2, 1, 2, 2),
        1,
        0.25,
    )["m"]
    assert float(got["max_sensitivity"][0]) == pytest.approx(math.sqrt(2))
    assert float(got["topk_intersection"][0]) == 1.0 and float(got["com_shift"][0]) == 0.0
    assert float(got["kept"][0]) == 0.5


def _replay(x: Tensor, deltas: Tensor):
    """A Quantus ``perturb_func`` that returns ``x + deltas[:, i]`` at its i-th call (Quantus asks
    for one perturbed batch per sample)."""
    step = iter(range(deltas.shape[1]))

    def perturb(arr: np.ndarray, indices: np.ndarray, **kwargs) -> np.ndarray:
        return (x + deltas[:, next(step)]).reshape(arr.shape[0], -1).numpy()

    return perturb


def test_agrees_with_quantus_given_the_same_noise() -> None:
    import quantus

    torch.manual_seed(0)
    net = SmallNet(classes=5).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    y = net(x).argmax(1)
    samples = 3
    deltas = rm.uniform_noise((3, 16, 16), samples, 0.1, [1, 2])

    def quantus_explain(model, inputs, targets, **kwargs) -> np.ndarray:
        t = torch.as_tensor(inputs).float()
        res = explain(net, t, "gradcam", "features", torch.as_tensor(targets).long())
        return res.maps["gradcam"][:, None].numpy()

    def explain_fn(inputs: Tensor, classes: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        r = explain(net, inputs, "gradcam", "features", classes)
        return r.maps, r.logits.argmax(1)

    a = quantus_explain(net, x.numpy(), y.numpy())
    ours = rm.robustness_scores(explain_fn, x, {"gradcam": torch.as_tensor(a[:, 0])}, y, y, deltas)
    metrics = {
        "max_sensitivity": quantus.MaxSensitivity,
        "avg_sensitivity": quantus.AvgSensitivity,
        "lipschitz": quantus.LocalLipschitzEstimate,
    }
    for key, kind in metrics.items():
        same_noise = _replay(x, deltas)
        metric = kind(
            nr_samples=samples,
            perturb_func=same_noise,
            normalise=False,
            abs=False,
            disable_warnings=True,
        )
        theirs = metric(
            model=net,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=a,
            explain_func=quantus_explain,
            device="cpu",
        )
        assert float(ours["gradcam"][key].min()) > 0  # the noise did change the maps
        np.testing.assert_allclose(ours["gradcam"][key].numpy(), theirs, rtol=1e-4, atol=1e-6)


def test_the_evaluate_family_writes_every_column(tmp_path) -> None:
    from camscope.data.synthetic import SyntheticBenchmark
    from camscope.evaluation import EvalConfig, run_evaluation
    from camscope.models import ModelSpec

    spec = ModelSpec(name="tiny", input_size=(32, 32), class_names=[f"c{i}" for i in range(1000)])
    config = EvalConfig(
        methods=["gradcam", "eigencam"],
        layers=["2"],
        metrics=["robustness"],
        batch_size=2,
        robustness_samples=2,
    )
    data = list(SyntheticBenchmark(2, size=32))
    result = run_evaluation(
        imagenet_sized(), spec, data, config, tmp_path, progress=False, examples=0
    )
    keys = ("max_sensitivity", "avg_sensitivity", "lipschitz", "topk_intersection", "com_shift")
    for method in ("gradcam", "eigencam"):
        board = result.summary["leaderboard"][method]
        assert set(keys) <= set(board)
        assert board["topk_intersection"]["mean"] <= 100.0
    assert "robustness" in result.summary["timing"]["by_stage"]
    # the same seeds give the same numbers when the run is repeated
    again = run_evaluation(
        imagenet_sized(), spec, data, config, tmp_path / "again", progress=False, examples=0
    )
    assert [r.get("lipschitz") for r in again.rows] == [r.get("lipschitz") for r in result.rows]
