"""FullGrad: values worked out by hand on GapNet, batch-norm biases, and pytorch-grad-cam."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nets import GapNet, ramp, t
from real_cases import CAT, efficientnet, pearson, peer_copy, vit
from torch import nn

from camscope import explain
from camscope.methods.fullgrad import effective_bias, rescaled_sum

# Bilinear resize 3 -> 4 (align_corners=False): output row i reads input row (i + 0.5) * 3/4 - 0.5
# = -0.125 (clamped to 0), 0.625, 1.375, 2.125 (clamped to 2).
RESIZE_3_TO_4 = t([[1, 0, 0], [0.375, 0.625, 0], [0, 0.625, 0.375], [0, 0, 1]])


def minmax(m: torch.Tensor) -> torch.Tensor:
    return (m - m.min()) / (m.max() - m.min())


@pytest.mark.reference("fullgrad")
def test_gap_net_by_hand() -> None:
    # Class 0 (W = [1, -1]): dscore/dP_k[i, j] = W[0, k] / 9 * [P_k > 0] (nets.py).
    # Input gradient: P0[i, j] = 2 x[i, j] - 5 and P1[i, j] = 21 - 2 x[i+1, j+1], so
    # dscore/dx[a, b] = 2/9 [P0[a, b] > 0] + 2/9 [P1[a-1, b-1] > 0]:
    grad_x = t([[0, 0, 0, 0], [2, 4, 4, 2], [2, 4, 4, 0], [0, 0, 0, 0]]) / 9
    # |grad x input| with x = 4a + b: row 1 = (8, 20, 24, 14) / 9, row 2 = (16, 36, 40, 0) / 9,
    # rescaled by its maximum 40/9 (the minimum is 0):
    input_term = t([[0, 0, 0, 0], [0.2, 0.5, 0.6, 0.35], [0.4, 0.9, 1.0, 0.0], [0, 0, 0, 0]])
    assert torch.allclose(minmax((grad_x * ramp()[0, 0]).abs()), input_term)
    # Bias terms |dscore/dP_k * b_k| = 5/9 [P0 > 0] and 21/9 [P1 > 0], resized to 4 x 4 and
    # rescaled (the factors 5/9 and 21/9 drop out):
    mask0 = t([[0, 0, 0], [1, 1, 1], [1, 1, 1]])
    mask1 = t([[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    bias0 = minmax(RESIZE_3_TO_4 @ mask0 @ RESIZE_3_TO_4.T)  # rows 0, 0.625, 1, 1
    assert torch.allclose(bias0[:, 2], t([0, 0.625, 1, 1]))
    bias1 = minmax(RESIZE_3_TO_4 @ mask1 @ RESIZE_3_TO_4.T)
    res = explain(GapNet(), ramp(), "fullgrad", layer="relu", targets=0)
    torch.testing.assert_close(
        res.raw["fullgrad"][0], input_term + bias0 + bias1, atol=1e-5, rtol=0
    )
    expected = input_term + bias0 + bias1
    torch.testing.assert_close(res.maps["fullgrad"][0], minmax(expected), atol=1e-5, rtol=0)


def test_batch_norm_bias_by_hand_and_folded_equivalence() -> None:
    bn = nn.BatchNorm2d(1, eps=1.0).eval()
    with torch.no_grad():
        bn.weight.fill_(2.0)
        bn.bias.fill_(1.0)
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(3.0)
    # beta - gamma mu / sqrt(var + eps) = 1 - 2 * 0.5 / 2 = 0.5
    assert torch.allclose(effective_bias(bn), t([0.5]))
    # conv (no bias) -> BN equals the folded conv (weight * gamma / sigma, bias 0.5): the same
    # function with the same bias term, so the same FullGrad map
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, 2, bias=False)
    with_bn = nn.Sequential(
        conv, bn, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2)
    )
    folded = nn.Conv2d(1, 1, 2)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * 2.0 / 2.0)
        folded.bias.fill_(0.5)
    plain = nn.Sequential(folded, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), with_bn[5])
    x = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    a = explain(with_bn.eval(), x, "fullgrad", layer="2", targets=[0, 1]).raw["fullgrad"]
    b = explain(plain.eval(), x, "fullgrad", layer="1", targets=[0, 1]).raw["fullgrad"]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_batch_norm_holding_its_activation() -> None:
    # timm's BatchNormAct2d applies its ReLU inside: the bias term is taken before it, as for
    # BatchNorm2d followed by a ReLU module
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    fused = BatchNormAct2d(3, act_layer=nn.ReLU)
    split = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
    with torch.no_grad():
        for bn in (fused, split[0]):
            bn.weight.copy_(t([1.5, 0.5, 2.0]))
            bn.bias.copy_(t([0.2, -0.3, 0.1]))
            bn.running_mean.copy_(t([0.1, 0.0, -0.2]))
            bn.running_var.copy_(t([1.0, 2.0, 0.5]))
    conv = nn.Conv2d(3, 3, 3, padding=1)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    a = nn.Sequential(conv, fused, head).eval()
    b = nn.Sequential(conv, split, head).eval()
    ra = explain(a, x, "fullgrad", layer="1", targets=2).raw["fullgrad"]
    rb = explain(b, x, "fullgrad", layer="1", targets=2).raw["fullgrad"]
    torch.testing.assert_close(ra, rb, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sizes", [(7, 7, 224, 224), (5, 9, 37, 50), (10, 6, 7, 5), (4, 4, 4, 4)])
def test_rescaled_sum_equals_resizing_every_channel(sizes: tuple[int, int, int, int]) -> None:
    h, w, big_h, big_w = sizes
    terms = torch.randn(2, 2, 9, h, w, generator=torch.Generator().manual_seed(0))
    flat = terms.abs().reshape(-1, 1, h, w)
    up = F.interpolate(flat, size=(big_h, big_w), mode="bilinear", align_corners=False)
    low, high = up.amin((-2, -1), keepdim=True), up.amax((-2, -1), keepdim=True)
    direct = ((up - low) / (high - low)).reshape(2, 2, 9, big_h, big_w).sum(2)
    torch.testing.assert_close(rescaled_sum(terms, (big_h, big_w)), direct, atol=1e-4, rtol=0)


def _unfolded(model: nn.Module) -> nn.Module:
    """The same function with timm's BatchNormAct2d split into BatchNorm2d + its activation:
    pytorch-grad-cam's FullGrad takes biases from modules of type exactly Conv2d/BatchNorm2d."""
    from timm.layers import BatchNormAct2d

    for name, child in model.named_children():
        if isinstance(child, BatchNormAct2d):
            bn = nn.BatchNorm2d(child.num_features, eps=child.eps)
            bn.load_state_dict(child.state_dict(), strict=False)
            setattr(model, name, nn.Sequential(bn, child.drop, child.act))
        else:
            _unfolded(child)
    return model.eval()


@pytest.mark.slow
def test_agrees_with_pytorch_grad_cam_on_efficientnet_lite0() -> None:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = efficientnet()
    ours = explain(model, x, "fullgrad", targets=[CAT]).maps["fullgrad"][0]
    peer = _unfolded(peer_copy(model))
    with torch.no_grad():
        assert torch.equal(peer(x), model(x))  # the same function
    theirs = pgc.FullGrad(peer, [])(x, [ClassifierOutputTarget(CAT)])[0]
    assert pearson(ours, theirs) >= 0.98  # measured 0.99997


def test_agrees_with_pytorch_grad_cam_on_a_vit() -> None:
    # the ViT's only layer with a spatial bias is its patch embedding convolution
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x, top = vit()
    ours = explain(model, x, "fullgrad", targets=[top]).maps["fullgrad"][0]
    theirs = pgc.FullGrad(peer_copy(model), [])(x, [ClassifierOutputTarget(top)])[0]
    assert pearson(ours, theirs) >= 0.98
