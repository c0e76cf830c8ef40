"""RefineCAM: the product of a base method's maps over layers, by hand on GapNet, and against
pytorch-grad-cam's and torchcam's RefineCAM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nets import A0, A1, P0, P1, GapNet, ramp, t
from real_cases import CAT, efficientnet, pearson, peer_copy, vit, vit_tokens_to_map

from camscope import explain
from camscope.errors import UsageError

# post-activation layers (ReLU6 outputs) at 28 x 28, 14 x 14 and 7 x 7: Grad-CAM++'s closed form
# is well defined there; on the signed residual stream (blocks.4, blocks.5) its denominators
# cross zero and each library's epsilon decides the map (measured r 0.11-0.46 per layer)
LAYERS = ["blocks.2.1.bn2", "blocks.4.2.bn2", "bn2"]


def expected_map(raw: torch.Tensor) -> torch.Tensor:
    """ReLU, bilinear upsampling to 4 x 4, min-max to [0, 1]: the engine's per-layer map."""
    up = F.interpolate(raw.clamp(min=0)[None, None], size=(4, 4), mode="bilinear")[0, 0]
    return (up - up.min()) / (up.max() - up.min())


@pytest.mark.reference("refinecam")
def test_gap_net_by_hand() -> None:
    # Grad-CAM, class 0 (tests/methods/test_methods_reference.py): at the ReLU output
    # L = (A0 - A1) / 9; at the convolution L = (6 P0 - 5 P1) / 81.
    relu = (t(A0) - t(A1)) / 9
    conv = (6 * t(P0) - 5 * t(P1)) / 81
    product = expected_map(relu) * expected_map(conv)
    res = explain(
        GapNet(),
        ramp(),
        ["refinecam", "gradcam"],
        layer=["conv", "relu"],
        targets=0,
        method_options={"base_method": "gradcam"},
    )
    torch.testing.assert_close(res.layer_maps["relu"]["refinecam"][0], expected_map(relu))
    torch.testing.assert_close(res.layer_maps["conv"]["refinecam"][0], expected_map(conv))
    fused = res.maps["refinecam"][0]
    torch.testing.assert_close(fused, product / product.max(), atol=1e-6, rtol=0)
    # Grad-CAM itself fuses the same layers by their mean
    mean = (expected_map(relu) + expected_map(conv)) / 2
    torch.testing.assert_close(
        res.maps["gradcam"][0], (mean - mean.min()) / (mean.max() - mean.min())
    )


def test_one_layer_is_the_base_map_with_a_warning() -> None:
    res = explain(GapNet(), ramp(), ["refinecam", "gradcam++"], layer="relu", targets=0)
    torch.testing.assert_close(res.maps["refinecam"], res.maps["gradcam++"])
    assert any("refinecam at the single layer" in w for w in res.warnings)


@pytest.mark.parametrize("base", ["refinecam", "sess", "guided-backprop", "nope"])
def test_bad_base_methods(base: str) -> None:
    with pytest.raises(UsageError):
        explain(
            GapNet(),
            ramp(),
            "refinecam",
            ["conv", "relu"],
            0,
            method_options={"base_method": base},
            strict=True,
        )


@pytest.mark.slow
def test_agrees_with_pytorch_grad_cam_on_efficientnet_lite0() -> None:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = efficientnet()
    ours = explain(model, x, "refinecam", layer=LAYERS, targets=[CAT]).maps["refinecam"][0]
    peer = peer_copy(model)
    modules = dict(peer.named_modules())
    cam = pgc.RefineCAM(peer, [modules[n] for n in LAYERS])  # default base: Grad-CAM++
    theirs = cam(x, [ClassifierOutputTarget(CAT)])[0]
    assert pearson(ours, theirs) >= 0.98  # measured 0.9993


def test_agrees_with_torchcam_on_efficientnet_lite0() -> None:
    # torchcam's Grad-CAM++ differs from the paper's closed form (tests/methods/test_agreement.py),
    # so its RefineCAM is compared with LayerCAM as the base, the one torchcam's docs show.
    # torchcam multiplies at the finest layer's resolution (28 x 28); we upsample its result.
    import torchcam.methods as tcm

    model, x = efficientnet()
    opts = {"base_method": "layercam"}
    ours = explain(model, x, "refinecam", layer=LAYERS, targets=[CAT], method_options=opts)
    peer = peer_copy(model)
    with tcm.RefineCAM(peer, LAYERS, input_shape=(3, 224, 224), base_method=tcm.LayerCAM) as cam:
        theirs = cam(class_idx=CAT, scores=peer(x))[0].detach()
    theirs = F.interpolate(theirs[:, None], size=(224, 224), mode="bilinear")[0, 0]
    assert pearson(ours.maps["refinecam"][0], theirs) >= 0.98


def test_agrees_with_pytorch_grad_cam_on_a_vit() -> None:
    # a random-init ViT's layer norms are signed: Grad-CAM is the base on both sides
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x, top = vit()
    layers = ["blocks.9.norm1", "blocks.10.norm1", "blocks.11.norm1"]
    opts = {"base_method": "gradcam"}
    ours = explain(model, x, "refinecam", layer=layers, targets=[top], method_options=opts)
    peer = peer_copy(model)
    modules = dict(peer.named_modules())
    cam = pgc.RefineCAM(
        peer, [modules[n] for n in layers], vit_tokens_to_map, base_method=pgc.GradCAM
    )
    theirs = cam(x, [ClassifierOutputTarget(top)])[0]
    assert pearson(ours.maps["refinecam"][0], theirs) >= 0.98
