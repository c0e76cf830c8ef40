"""The ``occlusion`` method and its passes (``camscope.perturbation.occlusion``): values worked out by
hand on a linear net, Captum's ``Occlusion`` as an independent implementation, batching, options."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from nets import SmallNet, ramp
from torch import Tensor, nn

from camscope import Explanation, explain
from camscope.errors import UsageError
from camscope.perturbation.occlusion import default_patch, occlusion_grid, spread_to_pixels


def linear_net() -> nn.Module:
    """An identity 1x1 conv ("conv"), then logit 0 = sum of the pixels, logit 1 = minus that.

    Covering patch P with baseline b lowers logit 0 by sum_{u in P} (x_u - b).
    """
    conv = nn.Conv2d(1, 1, 1, bias=False)
    head = nn.Linear(16, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        head.weight.copy_(torch.stack([torch.ones(16), -torch.ones(16)]))
    layers = [("conv", conv), ("flat", nn.Flatten()), ("head", head)]
    return nn.Sequential(OrderedDict(layers)).eval()


def _occlude_ramp(**options: object) -> Explanation:
    """Occlusion of ``ramp()`` through :func:`linear_net`, for class 0."""
    return explain(linear_net(), ramp(), "occlusion", "conv", targets=0, method_options=options)


@pytest.mark.reference("occlusion")
def test_non_overlapping_patches_by_hand() -> None:
    # ramp x[i, j] = 4 i + j; the four 2x2 blocks sum to 10, 18, 42 and 50.
    res = _occlude_ramp(patch=2, stride=2)
    block = torch.tensor([[10.0, 18.0], [42.0, 50.0]])
    expected = block.repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(res.raw["occlusion"][0], expected)
    # maps: ReLU, then min-max: (v - 10) / 40
    torch.testing.assert_close(res.maps["occlusion"][0], (expected - 10) / 40)


@pytest.mark.reference("occlusion")
def test_overlapping_patches_average_the_drops_by_hand() -> None:
    # 2x2 patches with stride 1: patch (r, c) sums to 16 r + 4 c + 10. Pixel row i is covered by
    # patch rows {0}, {0, 1}, {1, 2}, {2} (means R = 0, 0.5, 1.5, 2), likewise columns, so the
    # mean drop at (i, j) is 16 R(i) + 4 R(j) + 10.
    res = _occlude_ramp(patch=2, stride=1)
    r = torch.tensor([0.0, 0.5, 1.5, 2.0])
    torch.testing.assert_close(res.raw["occlusion"][0], 16 * r[:, None] + 4 * r[None, :] + 10)


@pytest.mark.reference("occlusion")
def test_baseline_and_the_other_class_by_hand() -> None:
    # baseline 1: drop of logit 0 = block sum - 4; logit 1 = -logit 0, so its drops are negated
    # (all negative: covering raises logit 1) and its map is all zero after the ReLU.
    opts = {"patch": 2, "stride": 2, "baseline": 1.0}
    res = explain(
        linear_net(), ramp(2), "occlusion", "conv", targets=[[0, 1], [1, 0]], method_options=opts
    )
    block = (
        torch.tensor([[6.0, 14.0], [38.0, 46.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    )
    raw = res.raw["occlusion"]
    torch.testing.assert_close(raw[0, 0], block)
    torch.testing.assert_close(raw[0, 1], -block)
    torch.testing.assert_close(raw[1, 0], -block)
    assert float(res.maps["occlusion"][0, 1].abs().max()) == 0.0


def test_a_single_logit_model_scores_class_0_by_minus_the_logit() -> None:
    """One logit z = sum of the pixels: class 1 is scored by +z, class 0 by -z (as the engine
    scores them), so class 0's drops are class 1's negated; the logit was read for class 0 and
    class 1 was an index error."""
    net = nn.Sequential(OrderedDict([("conv", linear_net().conv), ("flat", nn.Flatten())]))
    head = nn.Linear(16, 1, bias=False)
    with torch.no_grad():
        head.weight.fill_(1.0)
    net.add_module("head", head)
    opts = {"patch": 2, "stride": 2}
    block = torch.tensor([[10.0, 18.0], [42.0, 50.0]])
    expected = block.repeat_interleave(2, 0).repeat_interleave(2, 1)
    res = explain(net.eval(), ramp(), "occlusion", "conv", targets=[[1, 0]], method_options=opts)
    torch.testing.assert_close(res.raw["occlusion"][0, 0], expected)
    torch.testing.assert_close(res.raw["occlusion"][0, 1], -expected)
    assert float(res.maps["occlusion"][0, 1].abs().max()) == 0.0  # no evidence for "no"


def test_agrees_with_captum_occlusion() -> None:
    from captum.attr import Occlusion

    torch.manual_seed(0)
    net = SmallNet(classes=5).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    # (16 - 4) / 2 = 6: the grid ends at the border, as Captum's does
    res = explain(
        net, x, "occlusion", "features", targets=[1, 3], method_options={"patch": 4, "stride": 2}
    )
    theirs = Occlusion(net).attribute(
        x, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), baselines=0.0, target=[1, 3]
    )
    # Captum attributes the same value to the three colour channels
    torch.testing.assert_close(res.raw["occlusion"], theirs[:, 0], atol=1e-4, rtol=1e-4)


def test_batched_chunks_equal_one_pass_per_input() -> None:
    torch.manual_seed(1)
    net = SmallNet(classes=5).eval()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    seen: list[tuple[int, int]] = []
    opts = {"patch": 5, "stride": 3, "progress": lambda d, t: seen.append((d, t))}
    whole = explain(net, x, "occlusion", "features", targets=[0, 2, 4], method_options=opts)
    small = explain(
        net,
        x,
        "occlusion",
        "features",
        targets=[0, 2, 4],
        method_options={**opts, "batch_size": 3, "optimize": False},
    )
    torch.testing.assert_close(whole.raw["occlusion"], small.raw["occlusion"], atol=1e-5, rtol=1e-5)
    # rows 0, 3, 6, 9, 11 (the last touches the border): 25 patches per image, plus the full pass
    assert occlusion_grid((16, 16), 5, 3) == ([0, 3, 6, 9, 11], [0, 3, 6, 9, 11])
    assert seen[-1] == (3 * 26, 3 * 26)


def test_defaults_scale_with_the_input_and_bad_options_are_usage_errors() -> None:
    assert default_patch((224, 224)) == (32, 16)
    # 32 px patches at stride 16 slide over 0, 16, ..., 192: 13 positions per side, 169 in all
    assert [len(side) for side in occlusion_grid((224, 224), 32, 16)] == [13, 13]
    assert default_patch((16, 20)) == (3, 2)
    net, x = linear_net(), ramp()
    with pytest.raises(UsageError, match="larger than"):
        explain(net, x, "occlusion", "conv", method_options={"patch": 5})
    with pytest.raises(UsageError, match="'stride' must be >= 1"):
        explain(net, x, "occlusion", "conv", method_options={"stride": 0})
    with pytest.raises(UsageError, match="baseline"):
        explain(net, x, "occlusion", "conv", method_options={"baseline": "grey"})
    with pytest.raises(UsageError, match="callable target"):
        explain(net, x, "occlusion", "conv", targets=lambda out: out[:, 0])


def test_pixels_no_patch_covers_get_zero() -> None:
    drops = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out: Tensor = spread_to_pixels(drops, (5, 5), patch=2, stride=3)
    assert out[2].tolist() == [0.0] * 5 and out[:, 2].tolist() == [0.0] * 5
    assert out[0, 0] == 1.0 and out[4, 4] == 4.0


@pytest.mark.parametrize("options", [{"patch": 2, "stride": 2}, {"patch": 2, "stride": 1}, {}])
def test_registered_cost_is_the_passes_the_model_sees(options: dict) -> None:
    # 4x4 input: 2x2 patches at stride 2 -> 2 x 2 positions, stride 1 -> 3 x 3; the default patch
    # is ceil(4 / 7) = 1 px at stride 1 -> 4 x 4. Each adds the unoccluded pass; the shared
    # forward of explain() is not part of the method's cost.
    from camscope.methods import estimate_passes

    net = linear_net()
    seen: list[int] = []
    handle = net.head.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))
    try:
        explain(net, ramp(), "occlusion", "conv", targets=0, method_options=options)
    finally:
        handle.remove()
    estimate = estimate_passes(net, ramp(), ["occlusion"], "conv", method_options=options)
    assert estimate["occlusion"] == sum(seen) - 1
    assert estimate["occlusion"] == {2: 5, 1: 10}.get(options.get("stride", 0), 17)
