"""Default layers for the common image-classifier families.

``layer="auto"`` asks :func:`family_layer` first; families it does not know fall back to the
generic rule of :mod:`camscope.core.layers` (the last spatial map before pooling; timm's
``feature_info[-1]``). The rules, and why (see ``docs/families.md`` for the full table):

* **ViT / DeiT** (timm, torchvision, Hugging Face): the LayerNorm at the *input* of the last
  block's attention (timm ``blocks.{L-1}.norm1``, torchvision
  ``encoder.layers.encoder_layer_{L-1}.ln_1``, Hugging Face
  ``*.layers.{L-1}.layernorm_before``
  (``*.encoder.layer.{L-1}...`` before transformers 5)). A class-token model reads only the class token of
  the last block's output, so the patch tokens there get *zero* gradient and every gradient map
  is flat; one step earlier, the last attention still mixes every patch into the class token and
  the gradients say which patches mattered. The LayerNorm output (rather than the raw residual
  stream) removes the few high-norm outlier tokens that otherwise dominate activation-weighted
  maps.
* **Swin** (timm, torchvision, Hugging Face): the final norm that feeds global average pooling
  (``norm``; HF ``swin.layernorm``), channels-last or tokens, reshaped by :mod:`camscope.core.reshape`.
* **VGG**: the last ReLU before the final max-pool (``features.29`` in VGG-16), the rectified
  conv5_3 maps the Grad-CAM paper uses, at twice the resolution of the pooled output.
* **Inception-v3**: ``Mixed_7c``, the last Inception block (explicit, because at small inputs its
  output is 1x1 and the generic rule would skip it).
* **timm EfficientNet / EfficientNet-Lite**: ``bn2`` (``conv_head`` + BN + activation), the map
  that feeds global pooling, so that CAM (Zhou et al.) works with ``auto`` too.
* **torchvision segmentation models** (FCN, DeepLabV3, LR-ASPP): the backbone's last stage.
* **torchvision detectors** (:mod:`camscope.core.detection`): for the FPN detectors (Faster
  R-CNN, RetinaNet, FCOS, Mask/Keypoint R-CNN) the last stage of the backbone's body
  (``backbone.body.layer4`` of a ResNet-50), the input of the whole FPN: every box, from every
  pyramid level, depends on it (an FPN level alone would miss the boxes of the other levels);
  for SSD (VGG) the feature extractor ``backbone.features``, for SSDlite its first block
  ``backbone.features.0``, the map both its first head and every later block read; for a
  detector built on a backbone of its own, ``backbone``.

``"first"`` / ``"middle"`` / ``"last"`` mean the first, middle (``n // 2``) and last *block* of a
transformer (:func:`family_blocks`), not its convolutions: a ViT has a single convolution, the
patch embedding, which would be all three at once. The layer of each block is the one ``auto``
uses for the family: the input LayerNorm of each ViT block (so ``last`` is ``auto``), and each
Swin block's output (Swin has no class token, so its last block's output reaches the head).
CNNs keep the conv-based rule of :mod:`camscope.core.layers`.

Example:
    >>> family_layer(torchvision.models.vit_b_16())  # doctest: +SKIP
    'encoder.layers.encoder_layer_11.ln_1'
"""

from __future__ import annotations

import re

from torch import nn


def _last_index(names: list[str], pattern: str) -> str | None:
    """The name matching ``pattern`` (with one ``(\\d+)`` group) that has the largest index."""
    regex = re.compile(pattern)
    best: tuple[int, str] | None = None
    for name in names:
        match = regex.fullmatch(name)
        if match and (best is None or int(match.group(1)) > best[0]):
            best = (int(match.group(1)), name)
    return best[1] if best else None


def _indexed(names: list[str], pattern: str) -> list[str]:
    """Names fully matching ``pattern``, ordered by their captured integer groups."""
    regex = re.compile(pattern)
    found = [(tuple(int(g) for g in m.groups()), n) for n in names if (m := regex.fullmatch(n))]
    return [n for _, n in sorted(found)]


def family_blocks(model: nn.Module) -> list[str] | None:
    """The explainable layer of every block of a known transformer, in order, or None (CNNs)."""
    modules = dict(model.named_modules())
    names = [n for n in modules if n]
    cls = type(model).__name__
    origin = type(model).__module__
    blocks: list[str] = []
    if isinstance(getattr(model, "num_prefix_tokens", None), int) and "blocks" in modules:
        blocks = _indexed(names, r"blocks\.(\d+)\.norm1")
    elif origin.startswith("torchvision.models") and cls == "VisionTransformer":
        blocks = _indexed(names, r"encoder\.layers\.encoder_layer_(\d+)\.ln_1")
    elif origin.startswith("torchvision.models") and cls == "SwinTransformer":
        blocks = [
            f"features.{i}.{j}"
            for i, stage in enumerate(getattr(model, "features", []))
            if isinstance(stage, nn.Sequential)
            and type(stage[0]).__name__.startswith("SwinTransformerBlock")
            for j in range(len(stage))
        ]
    elif origin.startswith("timm.") and cls == "SwinTransformer":
        blocks = _indexed(names, r"layers\.(\d+)\.blocks\.(\d+)")
    elif hasattr(getattr(model, "config", None), "model_type"):  # Hugging Face
        blocks = _indexed(names, r"(?:.*\.)?(?:encoder\.layer|layers)\.(\d+)\.layernorm_before")
        if not blocks:
            blocks = _indexed(names, r"(?:.*\.)?layers\.(\d+)\.blocks\.(\d+)\.layernorm_before")
    return blocks or None


def _detector_layer(modules: dict[str, nn.Module]) -> str | None:
    """A torchvision detector's default layer (see the module docstring)."""
    body = modules.get("backbone.body")
    if body is not None:
        children = [n for n, _ in body.named_children()]
        return f"backbone.body.{children[-1]}" if children else None
    features = modules.get("backbone.features")
    if isinstance(features, nn.Sequential):
        if type(modules["backbone"]).__name__.startswith("SSDLite") and len(features):
            return "backbone.features.0"  # its blocks run one by one, not the Sequential
        return "backbone.features"
    return "backbone"  # a custom backbone: its output feeds every head


def family_layer(model: nn.Module) -> str | None:
    """The documented default layer of a known family, or None (see the module docstring)."""
    modules = dict(model.named_modules())
    names = [n for n in modules if n]
    cls = type(model).__name__
    origin = type(model).__module__
    if isinstance(getattr(model, "num_prefix_tokens", None), int) and "blocks" in modules:
        return _last_index(names, r"blocks\.(\d+)\.norm1")  # timm ViT / DeiT / Eva / BEiT
    if origin.startswith("torchvision.models"):
        if cls == "VisionTransformer":
            return _last_index(names, r"encoder\.layers\.encoder_layer_(\d+)\.ln_1")
        if cls == "SwinTransformer" and "norm" in modules:
            return "norm"
        if cls == "VGG":
            features = modules.get("features")
            if isinstance(features, nn.Sequential) and isinstance(features[-1], nn.MaxPool2d):
                return f"features.{len(features) - 2}"
        if cls == "Inception3":
            return "Mixed_7c"
        backbone = modules.get("backbone")
        if origin.startswith("torchvision.models.segmentation") and backbone is not None:
            children = [n for n, _ in backbone.named_children()]
            return f"backbone.{children[-1]}" if children else None
        if origin.startswith("torchvision.models.detection") and backbone is not None:
            return _detector_layer(modules)
    if origin.startswith("timm."):
        if cls == "SwinTransformer" and "norm" in modules:
            return "norm"
        if cls == "EfficientNet" and "bn2" in modules and "conv_head" in modules:
            return "bn2"
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "model_type"):  # Hugging Face
        # transformers >= 5: "vit.layers.N..."; 4.x: "vit.encoder.layer.N..."
        vit_like = _last_index(
            names, r"(?:.*\.)?(?:encoder\.layer|layers)\.(\d+)\.layernorm_before"
        )
        if vit_like is not None:
            return vit_like
        model_type = str(config.model_type)
        if model_type in ("swin", "swinv2"):
            found = [n for n in names if n.endswith("layernorm") and n.count(".") == 1]
            return found[-1] if found else None
    return None
