"""SESS: the crop plan and the blur by hand, the fused map on GapNet by hand, and pytorch-grad-cam's
SESS on EfficientNet-Lite0 and a ViT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nets import A0, A1, GapNet, ramp, t
from real_cases import CAT, efficientnet, pearson, peer_copy, vit, vit_tokens_to_map

from camscope import explain
from camscope.methods import estimate_passes
from camscope.methods.sess import crop_count, gaussian_blur, plan, window_starts


def test_crop_plan_by_hand() -> None:
    # 224 px, window 224, step round(224 * 2/7) = 64: shorter sides 224, 288, ..., 928. Windows per
    # side (stride 224, the last shifted inside): 224 -> 1; 288, 352, 416 -> 2; 480..672 -> 3;
    # 736, 800, 864 -> 4; 928 -> 5 (0, 224, 448, 672, 704).
    assert window_starts(928, 224) == [0, 224, 448, 672, 704]
    assert window_starts(672, 224) == [0, 224, 448]
    sizes = [scale for scale, _ in plan((224, 224), 12)]
    assert sizes == [(s, s) for s in range(224, 929, 64)]
    assert crop_count((224, 224), 12) == 1 + 3 * 4 + 4 * 9 + 3 * 16 + 25 == 122
    # non-square: the shorter side is scaled, the longer follows (torchvision's resize)
    assert plan((100, 150), 2)[1][0] == (129, 193)
    # cost: each crop is one forward and one backward of Grad-CAM
    net = GapNet()
    two = {"num_scales": 2}  # 5 crops on a 4 px input (below)
    assert estimate_passes(net, ramp(), ["sess"], "relu", method_options=two) == {"sess": 5 * 2}


def blur_matrix(n: int) -> torch.Tensor:
    """``B[i, j]``: the weight of pixel j in blurred pixel i, for the 11-tap Gaussian with sigma 5
    (weights exp(-d^2 / 50), normalised) and the border mirrored without repeating the edge."""
    weights = [math.exp(-(d**2) / 50) for d in range(-5, 6)]
    total = sum(weights)
    b = torch.zeros(n, n)
    for i in range(n):
        for d, w in zip(range(-5, 6), weights):
            j = i + d
            while not 0 <= j < n:  # mirror: -1 -> 1, n -> n - 2
                j = -j if j < 0 else 2 * (n - 1) - j
            b[i, j] += w / total
    return b


def test_blur_by_hand_and_against_opencv() -> None:
    import cv2

    m = torch.rand(1, 6, 9, generator=torch.Generator().manual_seed(0))
    expected = blur_matrix(6) @ m[0] @ blur_matrix(9).T
    torch.testing.assert_close(gaussian_blur(m)[0], expected, atol=1e-6, rtol=0)
    theirs = cv2.GaussianBlur(m[0].numpy(), (11, 11), 5.0, 0)
    np.testing.assert_allclose(gaussian_blur(m)[0].numpy(), theirs, atol=1e-6)


@pytest.mark.reference("sess")
def test_gap_net_one_scale_by_hand() -> None:
    # One scale: the only crop is the image; its weight is 1, so the fused map is Grad-CAM's map
    # where it is positive (0 elsewhere, the same), blurred. Grad-CAM for class 0 at the ReLU
    # output: (A0 - A1) / 9, upsampled to 4 x 4 and rescaled (test_methods_reference.py).
    raw = (t(A0) - t(A1)) / 9
    up = F.interpolate(raw.clamp(min=0)[None, None], size=(4, 4), mode="bilinear")[0, 0]
    gradcam = (up - up.min()) / (up.max() - up.min())
    expected = blur_matrix(4) @ gradcam @ blur_matrix(4).T
    res = explain(
        GapNet(), ramp(), "sess", layer="relu", targets=0, method_options={"num_scales": 1}
    )
    torch.testing.assert_close(res.raw["sess"][0], expected, atol=1e-6, rtol=0)


def test_two_scales_explain_five_crops() -> None:
    # 4 px: window 4, step round(8/7) = 1, scales 4 and 5: one crop, then 2 x 2 crops
    net = GapNet()
    rows: list[int] = []
    handle = net.conv.register_forward_hook(lambda _m, i, _o: rows.append(len(i[0])))
    explain(net, ramp(), "sess", layer="relu", targets=0, method_options={"num_scales": 2})
    handle.remove()
    assert rows == [1, 1, 4]  # the call's own forward, then the crops of each scale


@pytest.mark.slow
def test_agrees_with_pytorch_grad_cam_on_efficientnet_lite0() -> None:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # 4 scales (13 crops) on both sides instead of the default 12 (122 crops): the same
    # computation, ten times shorter (with 12 scales we measured r = 0.9999999, 6 s against the
    # peer's 29 s)
    model, x = efficientnet()
    opts = {"num_scales": 4}
    ours = explain(model, x, "sess", targets=[CAT], method_options=opts).maps["sess"][0]
    peer = peer_copy(model)
    theirs = pgc.SESS(peer, [peer.bn2], num_scales=4)(x, [ClassifierOutputTarget(CAT)])[0]
    assert pearson(ours, theirs) >= 0.98


def test_agrees_with_pytorch_grad_cam_on_a_vit() -> None:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x, top = vit()
    opts = {"num_scales": 4}
    ours = explain(model, x, "sess", "blocks.11.norm1", [top], method_options=opts).maps["sess"]
    peer = peer_copy(model)
    cam = pgc.SESS(peer, [peer.blocks[11].norm1], vit_tokens_to_map, num_scales=4)
    theirs = cam(x, [ClassifierOutputTarget(top)])[0]
    assert pearson(ours[0], theirs) >= 0.98
