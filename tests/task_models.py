"""Small random-init models of the tasks beyond classification, shared by the CLI, data-set and
viewer tests (also loadable by name: ``tests/task_models.py:tiny_detector``).

* :func:`tiny_detector`: a torchvision Faster R-CNN on a two-convolution backbone at 64 x 64,
  its box classifier nudged so that it detects class 1 ("cat") with a score of about 0.99 (a
  random head scores every class about equally, below any useful threshold);
* :func:`tiny_segmenter`: torchvision's LR-ASPP (MobileNet-V3) with random weights at 64 x 64
  and the 21 Pascal VOC classes.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from camscope.models import ModelSpec

DETECTOR_CLASSES = ["__background__", "cat", "dog"]
SIZE = 64


class _Backbone(nn.Sequential):
    out_channels = 8


def tiny_detector() -> tuple[nn.Module, ModelSpec]:
    torch.manual_seed(0)
    backbone = _Backbone(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
    )
    model = FasterRCNN(
        backbone,
        num_classes=len(DETECTOR_CLASSES),
        min_size=SIZE,
        max_size=SIZE,
        rpn_anchor_generator=AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
        rpn_post_nms_top_n_test=30,
        box_detections_per_img=3,
    )
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1] = 6.0
    spec = ModelSpec(
        name="tiny_detector",
        input_size=(SIZE, SIZE),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        class_names=list(DETECTOR_CLASSES),
        source="test",
        task="detection",
    )
    return model.eval(), spec


def tiny_segmenter() -> tuple[nn.Module, ModelSpec]:
    from camscope.models.tasks import build_torchvision_task_model, task_spec

    torch.manual_seed(0)
    model = build_torchvision_task_model("lraspp_mobilenet_v3_large", None).eval()
    spec = dataclasses.replace(task_spec("tiny_segmenter", model), input_size=(SIZE, SIZE))
    return model, spec
