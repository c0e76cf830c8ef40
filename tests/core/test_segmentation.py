"""Segmentation targets: explain the sum of a class's logits over a pixel mask (FCN, DeepLabV3)."""

from __future__ import annotations

from functools import cache

import pytest
import torch
import torchvision.models.segmentation as seg
from torch import Tensor, nn

import camscope
from camscope.core.segmentation import SegmentationTarget
from camscope.errors import TargetError


@cache
def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    build = getattr(seg, name)
    return build(weights=None, weights_backbone=None, num_classes=4).eval()


def _x() -> Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def _mask() -> Tensor:
    mask = torch.zeros(64, 64)
    mask[8:30, 20:50] = 1
    return mask


def _by_hand(model: nn.Module, layer: str, x: Tensor, class_id: int, mask: Tensor) -> Tensor:
    """Grad-CAM of the masked score with plain autograd (independent of camscope's engine)."""
    module = dict(model.named_modules())[layer]
    saved: dict[str, Tensor] = {}

    def hook(_m: nn.Module, _i: object, out: Tensor) -> None:
        out.retain_grad()
        saved["a"] = out

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x)["out"]
            (logits[:, class_id] * mask).sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    act, grad = saved["a"].detach(), saved["a"].grad
    assert grad is not None
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return (weights * act).sum(1)


@pytest.mark.parametrize(
    ("name", "layer"),
    [("fcn_resnet50", "backbone.layer4"), ("deeplabv3_mobilenet_v3_large", "backbone.16")],
)
def test_masked_class_gradcam_matches_autograd(name: str, layer: str) -> None:
    model = _model(name)
    x = _x()
    target = SegmentationTarget(2, mask=_mask())
    res = camscope.explain(model, x, ["gradcam", "layercam"], layer="auto", targets=target)
    assert res.layer == layer
    expected = _by_hand(model, layer, x, 2, _mask())
    torch.testing.assert_close(
        res.raw["gradcam"], expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max())
    )
    for maps in res.maps.values():
        assert maps.shape == (2, 64, 64) and torch.isfinite(maps).all()
        assert float((maps.flatten(1).amax(1) - maps.flatten(1).amin(1)).max()) > 0.5
    assert res.logits is None and res.probabilities is None  # no class scores to report
    assert all(p.grad is None for p in model.parameters())


def test_score_is_the_masked_logit_sum() -> None:
    logits = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    score = SegmentationTarget(1, mask=mask)({"out": logits})
    # class 1 of image 0 is [[4, 5], [6, 7]] -> 4 + 7; of image 1 [[16, 17], [18, 19]] -> 16 + 19
    assert score.tolist() == [11.0, 35.0]
    # no mask: the pixels predicted as the class (class 2 has the largest logits everywhere)
    assert SegmentationTarget(2)(logits).tolist() == [8 + 9 + 10 + 11, 20 + 21 + 22 + 23]


def test_bad_masks_and_classes_are_explained() -> None:
    logits = torch.zeros(1, 3, 4, 4)
    with pytest.raises(TargetError, match="resolution"):
        SegmentationTarget(0, mask=torch.ones(5, 5))({"out": logits})
    with pytest.raises(TargetError, match="out of range"):
        SegmentationTarget(7, mask=torch.ones(4, 4))(logits)
    with pytest.raises(TargetError, match="output_key"):
        SegmentationTarget(0)({"seg": logits})
    logits[:, 1] = 1.0
    with pytest.raises(TargetError, match="labels no pixel") as err:
        SegmentationTarget(0)(logits)
    assert "--region" in str(err.value)  # what a camscope explain user passes


def test_agrees_with_pytorch_grad_cam_semantic_segmentation_target() -> None:
    """pytorch-grad-cam's ``SemanticSegmentationTarget`` (the sum of the class's scores in the
    mask) through its GradCAM, on the same random-init FCN and layer (its tutorial wraps the
    model so that it returns ``out``)."""
    import copy

    import numpy as np
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    model = _model("fcn_resnet50")
    x = _x()[:1]

    class OutOnly(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, t: Tensor) -> Tensor:
            return self.inner(t)["out"]

    peer_model = OutOnly(copy.deepcopy(model))
    with GradCAM(peer_model, [peer_model.inner.backbone.layer4]) as cam:
        peer = cam(x, targets=[SemanticSegmentationTarget(2, _mask().numpy())])[0]
    res = camscope.explain(model, x, "gradcam", targets=SegmentationTarget(2, mask=_mask()))
    ours = res.maps["gradcam"][0].numpy()
    r = float(np.corrcoef(ours.ravel(), peer.ravel())[0, 1])
    assert r >= 0.98, f"r = {r:.4f}"


def test_a_region_at_another_resolution_is_resized_on_request() -> None:
    logits = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4).expand(1, 2, 4, 4)
    region = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # the top-left quarter, at 2 x 2
    with pytest.raises(TargetError, match="resolution"):
        SegmentationTarget(1, mask=region)(logits)
    # nearest neighbour to 4 x 4: pixels (0, 0), (0, 1), (1, 0), (1, 1) -> 0 + 1 + 4 + 5
    assert SegmentationTarget(1, mask=region, resize=True)(logits).tolist() == [10.0]


def test_class_fractions_count_the_predicted_pixels_in_eval_mode() -> None:
    from camscope.core.segmentation import class_fractions

    class ChannelsAreClasses(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.9)  # would scramble the labels in train mode

        def forward(self, x: Tensor) -> dict[str, Tensor]:
            return {"out": self.drop(x)}

    # per-pixel arg-max: [[0, 1], [2, 2]] -> fractions 1/4, 1/4, 1/2
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0, 0, 0] = x[0, 1, 0, 1] = x[0, 2, 1, 0] = x[0, 2, 1, 1] = 1.0
    model = ChannelsAreClasses().train()
    torch.testing.assert_close(class_fractions(model, x), torch.tensor([[0.25, 0.25, 0.5]]))
    assert model.training and model.drop.training
