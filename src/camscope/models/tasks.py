"""torchvision detectors and segmentation models: building them and their :class:`ModelSpec`.

``load_model("fasterrcnn_resnet50_fpn")`` (or ``fcn_resnet50``, ...) comes here. What differs
from a classifier:

* **Detectors** (Faster R-CNN, RetinaNet, FCOS, SSD, Mask/Keypoint R-CNN) take images in
  [0, 1] and resize and normalise them themselves (``GeneralizedRCNNTransform``), so the spec
  normalises nothing (mean 0, std 1) and its input size is the square of the transform's
  ``min_size`` (800; SSD's fixed 300 / 320): camscope resizes the whole image to it (as for
  classifiers, without keeping the aspect ratio) and the detector's own resize then leaves it as
  it is. Class names: COCO's 91 categories (``__background__`` and ``N/A`` included, so that a
  label is its index) from the weights' metadata, also for random weights with 91 classes.
* **Segmentation models** (FCN, DeepLabV3, LR-ASPP): ImageNet normalisation at 520 x 520, the
  size of torchvision's preset; the 21 Pascal VOC categories from the weights' metadata.
* ``weights_backbone`` is never downloaded: with ``pretrained=False`` both the model's and the
  backbone's weights stay random (torchvision would otherwise fetch the ImageNet backbone).

:func:`task_of` tells any model's task from its class (torchvision's detectors and
segmentation models), so a model built by a factory gets the right spec too.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from torch import nn

from ..errors import ModelLoadError
from .spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

log = logging.getLogger(__name__)

TASKS = ("classification", "detection", "segmentation", "similarity")
DETECTION_SIZE = 800  # GeneralizedRCNNTransform's default min_size
SEGMENTATION_SIZE = 520  # torchvision's SemanticSegmentation preset


def torchvision_task(name: str) -> str | None:
    """``"detection"`` or ``"segmentation"`` for a torchvision model of that kind, else None."""
    import torchvision.models as tvm

    if name in tvm.list_models(module=tvm.detection):
        return "detection"
    if name in tvm.list_models(module=tvm.segmentation):
        return "segmentation"
    return None


def task_of(model: nn.Module) -> str:
    """The task a model's class says it does: torchvision's detectors and segmentation models,
    else ``"classification"``."""
    origin = type(model).__module__
    if origin.startswith("torchvision.models.detection"):
        return "detection"
    if origin.startswith("torchvision.models.segmentation"):
        return "segmentation"
    return "classification"


def build_torchvision_task_model(name: str, weights: Any) -> nn.Module:
    """torchvision's ``name`` with ``weights`` (an enum value, or None for random weights and a
    random backbone: nothing is downloaded)."""
    import torchvision.models as tvm

    kwargs: dict[str, Any] = {"weights": weights}
    if weights is None:
        kwargs["weights_backbone"] = None
    return tvm.get_model(name, **kwargs)


def _known_categories(task: str) -> list[str]:
    """torchvision's COCO (detection, 91 with background and N/A) or Pascal VOC (segmentation,
    21) categories."""
    try:
        from torchvision.models import _meta

        found = _meta._COCO_CATEGORIES if task == "detection" else _meta._VOC_CATEGORIES
        return list(found)
    except (ImportError, AttributeError):  # pragma: no cover - other torchvision layouts
        return []


def _num_classes(model: nn.Module) -> int | None:
    for module in model.modules():
        n = getattr(module, "num_classes", None)
        if isinstance(n, int) and n > 0:
            return n
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    score = getattr(predictor, "cls_score", None)
    if isinstance(score, nn.Linear):
        return int(score.out_features)
    convs = [m for m in getattr(model, "classifier", nn.Identity()).modules()]
    last = [m for m in convs if isinstance(m, nn.Conv2d)]
    return int(last[-1].out_channels) if last else None


def _detector_size(model: nn.Module) -> tuple[int, int]:
    transform = getattr(model, "transform", None)
    fixed = getattr(transform, "fixed_size", None)
    if fixed:
        return int(fixed[0]), int(fixed[1])
    size = getattr(transform, "min_size", None) or (DETECTION_SIZE,)
    side = int(size[-1] if isinstance(size, (tuple, list)) else size)
    return side, side


def task_spec(name: str, model: nn.Module, weights_enum: Any = None) -> ModelSpec:
    """The :class:`ModelSpec` of a detector or segmentation model (see the module docstring);
    ``weights_enum`` gives the class names (its metadata is read, nothing is downloaded)."""
    task = task_of(model)
    categories: list[str] = []
    if weights_enum is not None:
        categories = list(getattr(weights_enum, "meta", {}).get("categories") or [])
    else:  # a factory's model: torchvision's lists when the class count fits
        categories = _known_categories(task)
    classes = _num_classes(model)
    if classes is not None and len(categories) != classes:
        categories = []
    source = f"torchvision {task} defaults" + (f" ({weights_enum})" if weights_enum else "")
    if task == "detection":
        return ModelSpec(
            name=name,
            input_size=_detector_size(model),
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            class_names=categories,
            source=source + "; the detector normalises its [0, 1] input itself",
            task=task,
        )
    return ModelSpec(
        name=name,
        input_size=(SEGMENTATION_SIZE, SEGMENTATION_SIZE),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        class_names=categories,
        source=source,
        task=task,
    )


def with_task(spec: ModelSpec, model: nn.Module) -> ModelSpec:
    """``spec`` of a model built elsewhere (a factory, a pickle): a torchvision detector or
    segmentation model gets its task's spec unless the factory gave one with a task."""
    task = task_of(model)
    if task == "classification" or spec.task != "classification":
        return spec
    fitted = task_spec(spec.name, model)
    return dataclasses.replace(fitted, class_names=spec.class_names or fitted.class_names)


def load_torchvision_task(
    name: str, use_library_weights: bool, no_download: str
) -> tuple[nn.Module, ModelSpec]:
    """Build torchvision detector or segmentation model ``name`` and its spec. Pretrained
    weights come from torch hub's local cache, or are downloaded when the host answers;
    ``no_download`` says how to go on without them."""
    import torchvision.models as tvm

    from . import hub

    enum_default: Any = tvm.get_model_weights(name).DEFAULT
    if use_library_weights:
        hub.require_torchvision_weights(name, enum_default, no_download)
    try:
        model = build_torchvision_task_model(name, enum_default if use_library_weights else None)
    except Exception as err:
        if use_library_weights:
            raise ModelLoadError(
                f"could not load the pretrained weights of torchvision model {name!r} ({err}); "
                f"{no_download}"
            ) from err
        raise ModelLoadError(f"torchvision could not build {name!r}: {err}") from err
    log.info(
        "model %r: torchvision %s, %s",
        name,
        task_of(model),
        enum_default if use_library_weights else "random weights (backbone too)",
    )
    return model, task_spec(name, model, enum_default)
