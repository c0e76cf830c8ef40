"""Classifiers to train, by name: timm and torchvision families, seed 004's GapNet, and the small-input
("CIFAR") stem.

:func:`build_classifier` builds a randomly initialised classifier with ``num_classes`` outputs for
square ``image_size`` inputs. Names:

* ``gapnet`` / ``gapnet-pooled``: :class:`camscope.models.gapnet.GapNet` (options ``width``,
  ``depth``, ``convs_per_block``, ``batch_norm``);
* any timm model name (``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``efficientnet_b0``,
  ``efficientnetv2_s``, ``mobilenetv3_large_100``, ``regnety_004``, ``swin_tiny_patch4_window7_224``
  ...), ``timm:NAME`` to insist; options are timm keyword arguments (``drop_rate=0.2``);
* a torchvision name with ``torchvision:`` (``tv:``); ``vgg16`` and ``vgg16_bn`` mean
  torchvision's (the layout of the VGG paper, which seed 004 trains), ``swin_tiny`` means timm's
  ``swin_tiny_patch4_window7_224``.

Vision transformers with a fixed input size (timm's ``fixed_input_size``: ViT, DeiT, Swin, ...) are
built for ``image_size`` (timm resizes the patch grid and clamps Swin's windows).

**The small-input patch.** A ViT's stem is its patch embedding: ``vit_tiny_patch16_224`` at 32 px
sees 2x2 patches, too few tokens to learn from or to read a map at. At 64 px or less (``stem="auto"``),
or with ``stem="cifar"``, timm ViTs and DeiTs (timm's ``VisionTransformer``, whose ``Attention`` the
attention methods support) get patches of ``image_size // 8`` px (4 at 32 px, 8 at 64 px): an 8x8
token grid, as in the ViTs trained on CIFAR from scratch (e.g. Lee et al. 2021, "Vision Transformer
for Small-Size Datasets", patch 4 at 32 px). A ``patch_size`` option wins; ``stem="imagenet"``
keeps the published patch. Swin and other transformers are built as published.

**The small-input stem.** An ImageNet CNN divides its input by 32: a 32-px CIFAR image leaves a
1x1 map at the last stage, where Grad-CAM is one number (seed 003: Grad-CAM "cannot detect any
features in the final layer"). With ``stem="cifar"`` (the default at 64 px or less) the first
convolution becomes a 3x3 stride-1 convolution (a new, randomly initialised one when the old kernel
was larger; otherwise only its stride changes) and a max-pool right after it is removed, as in the
CIFAR ResNets of He et al. (2016, section 4.2). That divides by 8 (ResNet) or 16 (EfficientNet,
MobileNet-V3, RegNet, whose other strides stay). VGG has no strided stem: its last max-pools are
removed until the last map is at least 4x4. :func:`map_check` says whether the layer Grad-CAM uses
by default is still smaller than 4x4 and names the layers that are not.

Example:
    >>> built = build_classifier("resnet18", num_classes=10, image_size=32)
    >>> built.stem, map_check(built.model, 32).size
    ('cifar', (4, 4))
    >>> map_check(build_classifier("resnet18", 10, 32, stem="imagenet").model, 32).size
    (1, 1)
    >>> vit = build_classifier("vit_tiny_patch16_224", num_classes=4, image_size=32)
    >>> vit.stem, tuple(vit.model.patch_embed.grid_size)
    ('cifar', (8, 8))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UsageError, closest
from .gapnet import GapNet
from .spec import model_device

log = logging.getLogger(__name__)

SMALL_INPUT = 64  # px: at or below it, CNNs get the CIFAR stem by default (ViTs a small patch)
MIN_MAP = 4  # the smallest map side a CAM is worth reading at
SMALL_GRID = 8  # tokens per side of a ViT's patch grid at small inputs
GAPNETS = ("gapnet", "gapnet-pooled")
ALIASES = {
    "swin_tiny": "swin_tiny_patch4_window7_224",
    "vgg16": "torchvision:vgg16",
    "vgg16_bn": "torchvision:vgg16_bn",
}
STEMS = ("auto", "cifar", "imagenet")
_GAPNET_OPTIONS = ("width", "depth", "convs_per_block", "batch_norm")


@dataclass
class BuiltModel:
    """What :func:`build_classifier` made.

    Attributes:
        model: the classifier (random initialisation, train mode).
        arch: the resolved name (``timm:resnet18``, ``torchvision:vgg16``, ``gapnet``...).
        stem: ``"cifar"`` (a CNN's CIFAR stem, a ViT's small patch), ``"imagenet"`` (as published)
            or ``"none"`` (GapNet, transformers other than timm ViTs).
        notes: what was changed for the input size, in words.
    """

    model: nn.Module
    arch: str
    stem: str
    notes: list[str] = field(default_factory=list)


def resolve_arch(arch: str) -> tuple[str, str]:
    """``(source, name)`` with source ``"gapnet"``, ``"timm"`` or ``"torchvision"``.

    Raises:
        UsageError: an unknown name, with the closest known names.
    """
    name = ALIASES.get(arch.strip(), arch.strip())
    if name in GAPNETS:
        return "gapnet", name
    source, sep, rest = name.partition(":")
    if sep and source in ("timm", "torchvision", "tv"):
        return ("timm" if source == "timm" else "torchvision"), rest
    import timm

    if timm.is_model(name):
        return "timm", name
    import torchvision.models as tvm

    if name in tvm.list_models(module=tvm):
        return "torchvision", name
    pool = [*GAPNETS, *ALIASES, *timm.list_models(), *tvm.list_models(module=tvm)]
    raise UsageError(
        f"unknown architecture {arch!r}; close names: {closest(name, pool)} (a timm or torchvision "
        "classifier name, or gapnet / gapnet-pooled)"
    )


def build_classifier(
    arch: str,
    num_classes: int,
    image_size: int,
    *,
    stem: str = "auto",
    options: Mapping[str, Any] | None = None,
    timm_weights_file: str | None = None,
) -> BuiltModel:
    """Build ``arch`` with ``num_classes`` outputs for ``image_size`` x ``image_size`` inputs.

    Args:
        arch: see the module docstring.
        num_classes: outputs.
        image_size: side of the square input.
        stem: ``"auto"`` (CIFAR stem for CNNs, small patch for ViTs at 64 px or less),
            ``"cifar"`` or ``"imagenet"`` (the architecture as published).
        options: GapNet options, or keyword arguments of the timm / torchvision constructor.
        timm_weights_file: a timm checkpoint to start from (timm drops the classifier when the
            class count differs and adapts position embeddings); the stem is adapted afterwards.

    Raises:
        UsageError: unknown name, stem or option.
    """
    if stem not in STEMS:
        raise UsageError(f"stem must be one of {', '.join(STEMS)}; got {stem!r}")
    if num_classes < 2:
        raise UsageError(f"a classifier needs at least 2 classes; got {num_classes}")
    source, name = resolve_arch(arch)
    opts = dict(options or {})
    if source == "gapnet":
        bad = sorted(set(opts) - set(_GAPNET_OPTIONS))
        if bad:
            raise UsageError(
                f"{name}: unknown option(s) {bad}; choose from {', '.join(_GAPNET_OPTIONS)}"
            )
        model: nn.Module = GapNet(num_classes, pooled=name == "gapnet-pooled", **opts)
        return BuiltModel(model, name, "none")
    use_cifar = stem == "cifar" or (stem == "auto" and image_size <= SMALL_INPUT)
    if source == "timm":
        return _build_timm(name, num_classes, image_size, opts, timm_weights_file, use_cifar)
    model = _build_torchvision(name, num_classes, opts)
    label = f"torchvision:{name}"
    if not use_cifar:
        return BuiltModel(model, label, "imagenet")
    return BuiltModel(model, label, "cifar", adapt_small_input(model, image_size))


def _build_timm(
    name: str,
    num_classes: int,
    image_size: int,
    options: dict[str, Any],
    weights_file: str | None,
    use_cifar: bool,
) -> BuiltModel:
    import timm

    cfg = timm.get_pretrained_cfg(name)
    transformer = bool(cfg is not None and cfg.fixed_input_size)
    kwargs = dict(options)
    label = f"timm:{name}"
    if not transformer:
        model = _create_timm(name, num_classes, kwargs, weights_file)
        if not use_cifar:
            return BuiltModel(model, label, "imagenet")
        return BuiltModel(model, label, "cifar", adapt_small_input(model, image_size))
    kwargs.setdefault("img_size", image_size)
    notes = [f"built for {image_size} px inputs"]
    published = _vit_patch(name, num_classes, kwargs)
    if published is None:  # Swin and other transformers: as published
        return BuiltModel(
            _create_timm(name, num_classes, kwargs, weights_file), label, "none", notes
        )
    small = max(1, image_size // SMALL_GRID)
    if not (use_cifar and "patch_size" not in options and small < published):
        model = _create_timm(name, num_classes, kwargs, weights_file)
        return BuiltModel(model, label, "imagenet", notes)
    kwargs["patch_size"] = small
    side = image_size // small
    notes.append(f"patch_embed: patch {published} -> {small} ({side}x{side} tokens)")
    return BuiltModel(_create_timm(name, num_classes, kwargs, weights_file), label, "cifar", notes)


def _vit_patch(name: str, num_classes: int, kwargs: dict[str, Any]) -> int | None:
    """The published patch side of a timm ``VisionTransformer`` (ViT, DeiT), else None.

    Built on the meta device (no memory, no random draws), so the real build that follows starts
    from the same random state as without this look.
    """
    from timm.models.vision_transformer import VisionTransformer

    probe = {k: v for k, v in kwargs.items() if k != "patch_size"}
    with torch.device("meta"):
        model = _create_timm(name, num_classes, probe, None)
    if not isinstance(model, VisionTransformer):
        return None
    patch = getattr(model.patch_embed, "patch_size", None)
    return int(patch[0]) if isinstance(patch, tuple) and patch[0] == patch[1] else None


def _create_timm(
    name: str, num_classes: int, kwargs: dict[str, Any], weights_file: str | None
) -> nn.Module:
    import timm

    if weights_file is not None:
        kwargs = {**kwargs, "pretrained_cfg_overlay": {"file": weights_file}}
    try:
        return timm.create_model(
            name, pretrained=weights_file is not None, num_classes=num_classes, **kwargs
        )
    except TypeError as err:
        raise UsageError(f"timm model {name!r} does not take these options: {err}") from err


def _build_torchvision(name: str, num_classes: int, options: dict[str, Any]) -> nn.Module:
    import torchvision.models as tvm

    try:
        return tvm.get_model(name, weights=None, num_classes=num_classes, **options)
    except (TypeError, ValueError) as err:
        raise UsageError(f"torchvision could not build {name!r}: {err}") from err


def _execution_order(model: nn.Module, image_size: int) -> list[tuple[str, nn.Module, tuple]]:
    """``(name, module, output shape)`` of every module with a 4-D output, in execution order."""
    from ..core.layers import dry_run

    return dry_run(model, torch.zeros(1, 3, image_size, image_size))


def adapt_small_input(model: nn.Module, image_size: int) -> list[str]:
    """Give ``model`` the CIFAR stem in place (see the module docstring); returns what changed."""
    order = _execution_order(model, image_size)
    convs = [(n, m) for n, m, _ in order if isinstance(m, nn.Conv2d)]
    if not convs:
        return ["no convolution found: stem unchanged"]
    first_name, first = convs[0]
    notes: list[str] = []
    if max(first.stride) > 1:
        if max(first.kernel_size) > 3:
            new = nn.Conv2d(
                first.in_channels,
                first.out_channels,
                3,
                stride=1,
                padding=1,
                bias=first.bias is not None,
            )
            model.set_submodule(first_name, new)
            notes.append(
                f"{first_name}: {tuple(first.kernel_size)} stride {first.stride} -> 3x3 stride 1"
            )
        else:
            first.stride = (1, 1)
            notes.append(f"{first_name}: stride -> 1")
        second = convs[1][0] if len(convs) > 1 else None
        for name, module, _ in order:
            if name == second:
                break
            if isinstance(module, nn.MaxPool2d):
                model.set_submodule(name, nn.Identity())
                notes.append(f"{name}: max-pool removed")
                break
    if notes:
        return notes
    pools = [n for n, m, _ in order if isinstance(m, nn.MaxPool2d)]
    while pools and _last_map_side(model, image_size) < MIN_MAP:
        name = pools.pop()  # no strided stem (VGG): drop the last max-pools instead
        model.set_submodule(name, nn.Identity())
        notes.append(f"{name}: max-pool removed")
    return notes or ["stem already stride 1"]


def _last_map_side(model: nn.Module, image_size: int) -> int:
    return min(map_check(model, image_size).size)


@dataclass(frozen=True)
class MapCheck:
    """The size of the map Grad-CAM reads by default, and the layers with usable maps.

    Attributes:
        layer: the ``layer="auto"`` choice.
        size: its ``(h, w)`` at the given input size.
        usable: ``(name, (h, w))`` for each map size of at least 4x4: the last of the outermost
            modules with that size (a stage's output), deepest first.
    """

    layer: str
    size: tuple[int, int]
    usable: list[tuple[str, tuple[int, int]]]

    @property
    def ok(self) -> bool:
        return min(self.size) >= MIN_MAP

    def message(self, image_size: int) -> str:
        """One sentence for a warning when the map is too small."""
        names = ", ".join(f"{n} ({h}x{w})" for n, (h, w) in self.usable[:4]) or "none"
        return (
            f"at {image_size} px the layer Grad-CAM uses by default ({self.layer}) has a "
            f"{self.size[0]}x{self.size[1]} map, smaller than {MIN_MAP}x{MIN_MAP}: its maps "
            f"cannot localize. Layers with at least {MIN_MAP}x{MIN_MAP} maps: {names}"
        )


def map_check(model: nn.Module, image_size: int) -> MapCheck:
    """Find the ``auto`` layer's map size at ``image_size`` and the usable layers.

    Reads :func:`camscope.core.layer_table.layer_table` (one dry forward; token and channels-last
    layouts as camscope reads them). Dropout, identity, pooling and attention-internal modules
    are not offered as usable layers.
    """
    from ..core.layer_table import layer_table

    x = torch.zeros(1, 3, image_size, image_size, device=model_device(model))
    rows = layer_table(model, x)
    auto = next(row for row in rows if "auto" in row.marks)
    by_size: dict[tuple[int, int], list[tuple[int, int, str]]] = {}
    for index, row in enumerate(rows):
        hw = (int(row.spatial[1]), int(row.spatial[2]))
        skip = any(word in row.kind for word in _NOT_A_LAYER) or ".attn" in row.name
        if min(hw) >= MIN_MAP and not skip:
            by_size.setdefault(hw, []).append((row.name.count("."), -index, row.name))
    # per map size the outermost module (fewest dots), the last of them: a stage's output
    picks = {hw: min(found) for hw, found in by_size.items()}
    usable = [(name, hw) for hw, (_, _, name) in sorted(picks.items(), key=lambda kv: kv[1][1])]
    return MapCheck(auto.name, (int(auto.spatial[1]), int(auto.spatial[2])), usable)


_NOT_A_LAYER = ("Drop", "Identity", "Pool", "Softmax")
