"""Detection targets: one map per box, hand-worked on a tiny detector, and agreement with
pytorch-grad-cam's ``FasterRCNNBoxScoreTarget`` on random-init torchvision detectors."""

from __future__ import annotations

import copy
from functools import cache

import numpy as np
import pytest
import torch
import torchvision.models.detection as tvd
from torch import Tensor, nn

import camscope
from camscope.core.detection import Detections, DetectionTarget, box_iou, detect
from camscope.errors import NothingToExplain, TargetError, UsageError

# TinyDetector: the layer "conv" is the identity on a one-channel 2x2 input, A = x. Per image it
# returns three fixed boxes (labels 1, 2, 1) with scores s0 = 2 A00 + A11, s1 = A01, s2 = A10 / 10.
# On X = [[0.3, 0.6], [0.2, 0.1]]: s = (0.7, 0.6, 0.02).
# Grad-CAM of box 0: dA = [[2, 0], [0, 1]], weight = mean = 0.75, raw map = 0.75 A;
# of box 1: dA = [[0, 1], [0, 0]], weight 0.25, raw map = 0.25 A.
BOXES = [[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 2.0, 1.0], [0.0, 1.0, 1.0, 2.0]]
X = torch.tensor([[0.3, 0.6], [0.2, 0.1]]).view(1, 1, 2, 2)


class TinyDetector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        a = self.conv(x)
        out = []
        for img in a:
            scores = torch.stack([2 * img[0, 0, 0] + img[0, 1, 1], img[0, 0, 1], img[0, 1, 0] / 10])
            boxes = torch.tensor(BOXES) + 0 * scores.sum()  # fixed boxes, part of the graph
            out.append({"boxes": boxes, "labels": torch.tensor([1, 2, 1]), "scores": scores})
        return out


def test_box_iou_by_hand() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    # overlap 1 of union 4 + 4 - 1; identical; disjoint. The empty box overlaps nothing.
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(box_iou(a, b), expected)


def test_every_box_above_the_threshold_gets_its_own_map_by_hand() -> None:
    model = TinyDetector().eval()
    target = DetectionTarget(score_threshold=0.5)
    res = camscope.explain(model, X, ["gradcam", "layercam"], layer="conv", targets=target)
    a = X[0, 0]
    assert res.raw["gradcam"].shape == (1, 2, 2, 2)
    torch.testing.assert_close(res.raw["gradcam"][0, 0], 0.75 * a)
    torch.testing.assert_close(res.raw["gradcam"][0, 1], 0.25 * a)
    # LayerCAM: ReLU(gradient) * A per position, summed over the one channel
    torch.testing.assert_close(res.raw["layercam"][0, 0], torch.tensor([[0.6, 0.0], [0.0, 0.1]]))
    torch.testing.assert_close(res.scores, torch.tensor([[0.7, 0.6]]))
    assert res.targets.tolist() == [[-1, -1]] and res.probabilities is None
    assert target.explained is not None
    assert target.explained[0].labels.tolist() == [1, 2]
    torch.testing.assert_close(target.explained[0].boxes, torch.tensor(BOXES[:2]))
    only_one = DetectionTarget(score_threshold=0.5, class_id=2)
    res = camscope.explain(model, X, "gradcam", layer="conv", targets=only_one)
    torch.testing.assert_close(res.raw["gradcam"][0, 0], 0.25 * a)


def test_a_given_box_is_matched_and_weighted_by_its_iou() -> None:
    model = TinyDetector().eval()
    a = X[0, 0]
    drawn = [[0.0, 0.0, 1.0, 1.5]]  # IoU 2/3 with box 0 (label 1), 1/4 with box 2
    for mode, score, weight in (
        ("none", 0.7, 0.75),
        ("multiply", 0.7 * 2 / 3, 0.75 * 2 / 3),  # the boxes are fixed: dIoU = 0
        ("add", 0.7 + 2 / 3, 0.75),
    ):
        target = DetectionTarget(boxes=drawn, iou=mode)
        res = camscope.explain(model, X, "gradcam", layer="conv", targets=target)
        torch.testing.assert_close(res.scores, torch.tensor([[score]]))
        torch.testing.assert_close(res.raw["gradcam"][0, 0], weight * a)
        assert target.explained is not None and target.explained[0].labels.tolist() == [1]
    # a label given with the box: the detection of that label (box 1 would not overlap enough)
    with pytest.raises(
        TargetError,
        match=r"no detection overlaps box \[0.0, 0.0, 1.0, 1.5\] \(in the model input's pixels\)",
    ):
        camscope.explain(
            model, X, "gradcam", layer="conv", targets=DetectionTarget(boxes=drawn, class_id=2)
        )
    target = DetectionTarget(boxes=[BOXES[1]], labels=[2])
    res = camscope.explain(model, X, "gradcam", layer="conv", targets=target)
    torch.testing.assert_close(res.raw["gradcam"][0, 0], 0.25 * a)


def test_per_image_boxes_and_padding_in_a_batch() -> None:
    model = TinyDetector().eval()
    x = torch.cat([X, X.flip(-1)])  # image 1: A = [[0.6, 0.3], [0.1, 0.2]] -> s = (1.4, 0.3, .01)
    target = DetectionTarget(score_threshold=0.5)
    res = camscope.explain(model, x, "gradcam", layer="conv", targets=target)
    assert res.scores.shape == (2, 2)
    torch.testing.assert_close(res.scores[1], torch.tensor([1.4, 0.0]))  # one box, one pad
    assert target.explained is not None and [len(d) for d in target.explained] == [2, 1]
    per_image = DetectionTarget(boxes=[[BOXES[0]], [BOXES[1]]], labels=[[1], [2]])
    res = camscope.explain(model, x, "gradcam", layer="conv", targets=per_image)
    torch.testing.assert_close(res.scores, torch.tensor([[0.7], [0.3]]))


def test_bad_requests_say_what_to_do() -> None:
    model = TinyDetector().eval()
    with pytest.raises(
        NothingToExplain, match=r"scores 0.9 or more \(the highest score is 0.700\)"
    ):
        camscope.explain(
            model, X, "gradcam", layer="conv", targets=DetectionTarget(score_threshold=0.9)
        )
    with pytest.raises(TargetError, match="x0 <= x1"):
        DetectionTarget(boxes=[[2.0, 0.0, 1.0, 1.0]])(model(X))
    with pytest.raises(UsageError, match="iou must be one of"):
        DetectionTarget(iou="max")
    with pytest.raises(TargetError, match="parse=<callable>"):
        DetectionTarget()(torch.zeros(1, 3))
    # any detector through parse: here one that returns (boxes, scores) tuples
    parse = lambda out: [Detections(b, torch.zeros(len(s), dtype=torch.long), s) for b, s in out]  # noqa: E731
    found = DetectionTarget(score_threshold=0.5, parse=parse)(
        [(torch.tensor(BOXES), torch.tensor([0.9, 0.1, 0.6], requires_grad=True))]
    )
    torch.testing.assert_close(found.detach(), torch.tensor([[0.9, 0.6]]))


# ------------------------------------------------------------ torchvision detectors (random init)

SIZE = 128


@cache
def _detector(name: str) -> nn.Module:
    """A random-init detector (random backbone too) whose head is nudged so that it detects."""
    torch.manual_seed(0)
    kwargs: dict = {"weights": None, "weights_backbone": None, "num_classes": 5}
    if name.startswith(("fasterrcnn", "retinanet", "fcos")):
        kwargs.update(min_size=SIZE, max_size=SIZE)
    if name.startswith("fasterrcnn"):
        kwargs.update(rpn_post_nms_top_n_test=40, box_detections_per_img=3)
    else:
        kwargs.update(detections_per_img=3)
    model = getattr(tvd, name)(**kwargs).eval()
    with torch.no_grad():
        if name.startswith(("retinanet", "fcos")):  # sigmoid scores: class 2 at ~0.98
            model.head.classification_head.cls_logits.bias[2] = 4.0
        elif name.startswith("ssd"):
            for conv in model.head.classification_head.module_list:
                conv.bias.view(-1, 5)[:, 2] += 6.0
    return model


def _x(size: int = SIZE) -> Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))


def _peer_map(model: nn.Module, x: Tensor, layer: str, det: Detections) -> np.ndarray:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    peer = copy.deepcopy(model)  # the peer calls eval() and registers its hooks
    module = dict(peer.named_modules())[layer]
    with GradCAM(peer, [module]) as cam:
        maps = cam(x, targets=[FasterRCNNBoxScoreTarget(det.labels, det.boxes)])
    return maps[0]


DETECTORS = {
    "fasterrcnn_resnet50_fpn": "backbone.body.layer4",
    "retinanet_resnet50_fpn": "backbone.body.layer4",
    "fcos_resnet50_fpn": "backbone.body.layer4",
    "ssd300_vgg16": "backbone.features",
}


@pytest.mark.parametrize(
    "name",
    [
        "fasterrcnn_resnet50_fpn",
        pytest.param("retinanet_resnet50_fpn", marks=pytest.mark.slow),
        pytest.param("fcos_resnet50_fpn", marks=pytest.mark.slow),
        pytest.param("ssd300_vgg16", marks=pytest.mark.slow),
    ],
)
def test_box_maps_agree_with_pytorch_grad_cam(name: str) -> None:
    model = _detector(name)
    x = _x(300 if name.startswith("ssd") else SIZE)
    found = detect(model, x)[0]
    area = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
    assert bool((area > 1).any()), "the nudged head should detect something"
    top = found.take(torch.nonzero(area > 1)[:1, 0])  # the best box that is not a sliver
    target = DetectionTarget(boxes=top.boxes, labels=top.labels, iou="add")
    res = camscope.explain(model, x, "gradcam", layer="auto", targets=target)
    assert res.layer == DETECTORS[name]
    ours = res.maps["gradcam"][0, 0].numpy()
    peer = _peer_map(model, x, DETECTORS[name], top)
    assert ours.shape == peer.shape
    r = float(np.corrcoef(ours.ravel(), peer.ravel())[0, 1])
    assert r >= 0.98, f"{name}: r = {r:.4f}"
    assert float(ours.max() - ours.min()) > 0.5


def test_every_detection_above_a_score_at_once_on_faster_rcnn() -> None:
    model = _detector("fasterrcnn_resnet50_fpn")
    x = _x()
    found = detect(model, x)[0]
    threshold = float(found.scores.min()) - 1e-6
    target = DetectionTarget(score_threshold=threshold)
    res = camscope.explain(model, x, ["gradcam", "eigencam"], targets=target)
    assert res.maps["gradcam"].shape == (1, len(found), SIZE, SIZE)
    torch.testing.assert_close(res.scores[0], found.scores, rtol=1e-4, atol=1e-5)
    assert target.explained is not None
    torch.testing.assert_close(target.explained[0].boxes, found.boxes, rtol=1e-4, atol=1e-3)
    # each box's map is its own: the maps of different boxes differ
    maps = res.maps["gradcam"][0]
    if len(found) > 1:
        assert float((maps[0] - maps[1]).abs().max()) > 1e-3


def test_no_side_effects_on_a_detector_in_train_mode() -> None:
    """A detector's forward differs in train mode (it wants targets and returns losses): the
    explanation runs in eval mode and leaves modes, flags, hooks and gradients as they were,
    also when the target fails."""
    model = copy.deepcopy(_detector("fasterrcnn_resnet50_fpn"))
    model.train()
    model.backbone.body.conv1.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    x = _x()
    res = camscope.explain(model, x, "gradcam", targets=DetectionTarget(score_threshold=0.0))
    assert res.maps["gradcam"].ndim == 4
    with pytest.raises(TargetError, match="scores 2 or more"):
        camscope.explain(model, x, "gradcam", targets=DetectionTarget(score_threshold=2.0))
    nowhere = DetectionTarget(boxes=[[0.0, 0.0, 1.0, 1.0]], labels=[4])
    with pytest.raises(TargetError, match=r"no detection of the box.s class overlaps"):
        camscope.explain(model, x, "gradcam", targets=nowhere)
    assert len(detect(model, x)[0]) >= 1  # detect: eval mode for the pass, then train mode again
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
