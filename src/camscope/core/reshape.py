"""Turning any layer output into a ``(B, C, h, w)`` feature map, from the model's own facts.

CAM methods weight channels and sum over a spatial grid, so they need ``(B, C, h, w)``. Three
layouts occur in common image classifiers:

* ``NCHW``: every CNN (ResNet, DenseNet, EfficientNet, ConvNeXt in torchvision and timm). Passed
  through unchanged.
* ``NHWC`` (channels last): the stages and final norm of Swin (timm and torchvision) and of a few
  timm models that declare ``output_fmt = "NHWC"``. Permuted to ``NCHW``.
* tokens ``(B, N, C)``: vision transformers (ViT, DeiT, BEiT, Hugging Face ViT/Swin). The
  ``p`` prefix tokens (class token, distillation token, register tokens) are dropped and the
  remaining ``N - p`` patch tokens are laid out on the patch grid ``h x w`` in row-major order.

The facts come from the model, not from guesses where it has them:

* prefix tokens: timm ``num_prefix_tokens``; torchvision ``VisionTransformer`` has one class token;
  Hugging Face configs (ViT/BEiT: one, DeiT: two, DINOv2: one plus ``num_register_tokens``,
  Swin/ConvNeXt: none);
* the grid: the input size divided by the patch size (timm ``patch_embed.patch_size``, torchvision
  ``patch_size``, Hugging Face ``config.patch_size``), checked against the token count (an output
  of exactly that many tokens, such as the patch embedding's, has no prefix tokens yet); layers at
  a coarser stride (Swin stages) get the factorisation of the token count whose aspect ratio is
  closest to the input's;
* ``NHWC``: a 4-D output whose dims 1-2 match the input's aspect ratio while dims 2-3 do not, or,
  when both fit (square outputs), the model's declaration (timm ``output_fmt``, torchvision
  ``SwinTransformer``).

Models these rules do not cover take ``reshape=callable`` in :func:`camscope.explain`, which
overrides everything here. Example::

    >>> fn = spatial_reshape(model, "blocks.11.norm1", (224, 224))  # doctest: +SKIP
    >>> fn(torch.zeros(2, 197, 192)).shape  # doctest: +SKIP
    torch.Size([2, 192, 14, 14])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from ..errors import LayerError

ReshapeFn = Callable[[Tensor], Tensor]

_MAX_GUESSED_PREFIX = 8  # prefix tokens tried when the model does not say how many it has


@dataclass(frozen=True)
class TokenFacts:
    """What a model says about the layout of its token / channels-last outputs.

    Attributes:
        prefix_tokens: tokens before the patch tokens (class, distillation, registers), or None
            when the model does not say.
        patch_size: ``(ph, pw)`` of the patch embedding, or None.
        channels_last: whether the model declares channels-last (NHWC) feature maps.
        source: where the facts came from, for messages and ``camscope layers``.
    """

    prefix_tokens: int | None = None
    patch_size: tuple[int, int] | None = None
    channels_last: bool = False
    source: str = "none"


def _pair(value: object) -> tuple[int, int] | None:
    if isinstance(value, int) and value > 0:
        return value, value
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) for v in value)
    ):
        return int(value[0]), int(value[1])
    return None


def _hf_prefix_tokens(config: object) -> int | None:
    model_type = str(getattr(config, "model_type", ""))
    if model_type in ("swin", "swinv2", "convnext", "convnextv2", "donut-swin"):
        return 0
    if model_type == "deit":
        return 2
    registers = getattr(config, "num_register_tokens", 0)
    registers = registers if isinstance(registers, int) else 0
    if model_type in (
        "vit",
        "beit",
        "data2vec-vision",
        "dinov2",
        "dinov2_with_registers",
        "dinov3_vit",
        "vit_msn",
        "vit_mae",
    ):
        return 1 + registers
    return None


def token_facts(model: nn.Module) -> TokenFacts:
    """Read prefix tokens, patch size and channels-last declaration from a model (see module doc)."""
    prefix = getattr(model, "num_prefix_tokens", None)
    patch_embed = getattr(model, "patch_embed", None)
    if isinstance(prefix, int):  # timm ViT family (VisionTransformer, DeiT, Eva, BEiT, ...)
        patch = _pair(getattr(patch_embed, "patch_size", None))
        return TokenFacts(prefix, patch, False, "timm num_prefix_tokens")
    if (
        getattr(model, "output_fmt", None) == "NHWC"
        or str(getattr(model, "output_fmt", "")) == "Format.NHWC"
    ):
        patch = _pair(getattr(patch_embed, "patch_size", None))
        return TokenFacts(0, patch, True, "timm output_fmt=NHWC")
    cls = type(model)
    if cls.__module__.startswith("torchvision.models"):
        if cls.__name__ == "VisionTransformer":
            return TokenFacts(
                1, _pair(getattr(model, "patch_size", None)), False, "torchvision ViT"
            )
        if cls.__name__ == "SwinTransformer":
            return TokenFacts(0, None, True, "torchvision Swin (NHWC stages)")
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "model_type"):  # Hugging Face PreTrainedModel
        return TokenFacts(
            _hf_prefix_tokens(config),
            _pair(getattr(config, "patch_size", None)),
            False,
            f"Hugging Face config ({getattr(config, 'model_type', '?')})",
        )
    return TokenFacts()


def _ratio_error(h: int, w: int, size: tuple[int, int]) -> float:
    """How far the grid ``h x w`` is from the input's aspect ratio (0 = exact), in log units."""
    return abs(math.log((h / w) / (size[0] / size[1])))


def _fits(h: int, w: int, size: tuple[int, int]) -> bool:
    """Whether ``h x w`` can be a feature grid of an ``size`` input (aspect within 1.5x, not larger than 2x)."""
    if h < 1 or w < 1 or h > 2 * size[0] or w > 2 * size[1]:
        return False
    return _ratio_error(h, w, size) <= math.log(1.5)


def token_grid(
    count: int, size: tuple[int, int], patch: tuple[int, int] | None = None
) -> tuple[int, int] | None:
    """The ``(h, w)`` grid of ``count`` patch tokens for an input of ``size``, or None.

    The patch grid ``H // ph x W // pw`` when it has exactly ``count`` cells; otherwise the
    factorisation ``h * w == count`` closest to the input's aspect ratio (coarser Swin stages).
    """
    if count < 1:
        return None
    if patch is not None:
        h, w = size[0] // patch[0], size[1] // patch[1]
        if h * w == count:
            return h, w
    best: tuple[float, tuple[int, int]] | None = None
    for h in range(1, count + 1):
        if count % h:
            continue
        w = count // h
        if not _fits(h, w, size):
            continue
        err = _ratio_error(h, w, size)
        if best is None or err < best[0] - 1e-9:
            best = (err, (h, w))
    return best[1] if best else None


def _tokens_to_map(t: Tensor, prefix: int, grid: tuple[int, int]) -> Tensor:
    b, _, c = t.shape
    return t[:, prefix:, :].reshape(b, grid[0], grid[1], c).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class OutputLayout:
    """How one layer's output maps to ``(C, h, w)``: ``kind`` is ``NCHW``, ``NHWC`` or ``tokens``."""

    kind: str
    prefix: int = 0
    grid: tuple[int, int] | None = None

    def __str__(self) -> str:
        if self.kind == "tokens" and self.grid is not None:
            return f"tokens(prefix={self.prefix}, grid={self.grid[0]}x{self.grid[1]})"
        return self.kind


def layout_of(
    shape: tuple[int, ...], facts: TokenFacts, size: tuple[int, int]
) -> OutputLayout | None:
    """The :class:`OutputLayout` of a per-sample output ``shape`` (no batch axis), or None if no rule fits."""
    if len(shape) == 3:
        nchw = _fits(shape[1], shape[2], size)
        nhwc = _fits(shape[0], shape[1], size)
        if nhwc and (not nchw or facts.channels_last):
            return OutputLayout("NHWC")
        return OutputLayout("NCHW")
    if len(shape) == 2:
        count = shape[0]
        if facts.prefix_tokens and facts.patch_size is not None:
            # the patch embedding's own output comes before the prefix tokens are added
            patches = (size[0] // facts.patch_size[0], size[1] // facts.patch_size[1])
            if patches[0] * patches[1] == count:
                return OutputLayout("tokens", 0, patches)
        prefixes = (
            [facts.prefix_tokens]
            if facts.prefix_tokens is not None
            else range(_MAX_GUESSED_PREFIX + 1)
        )
        for p in prefixes:
            grid = token_grid(count - p, size, facts.patch_size)
            if grid is not None:
                return OutputLayout("tokens", p, grid)
    return None


def spatial_reshape(model: nn.Module, layer: str, size: tuple[int, int]) -> ReshapeFn:
    """A function mapping ``layer``'s output (or its gradient) to ``(B, C, h, w)``.

    Args:
        model: the model, read for its :func:`token_facts`.
        layer: the layer's dotted name, used in error messages.
        size: the input's ``(H, W)``.

    The returned function raises :class:`~camscope.errors.LayerError` for outputs no rule covers.
    """
    facts = token_facts(model)

    def reshape(t: Tensor) -> Tensor:
        if t.ndim not in (3, 4):
            raise LayerError(
                f"layer {layer!r} outputs shape {tuple(t.shape)}, not a feature map or token "
                "sequence; pick a convolutional or transformer-block layer, or pass "
                "reshape=<callable mapping it to (B, C, H, W)>"
            )
        layout = layout_of(tuple(t.shape[1:]), facts, size)
        if layout is not None and layout.kind == "NCHW":
            return t
        if layout is not None and layout.kind == "NHWC":
            return t.permute(0, 3, 1, 2)
        if layout is not None and layout.grid is not None:
            return _tokens_to_map(t, layout.prefix, layout.grid)
        known = (
            f"{facts.prefix_tokens} prefix token(s)"
            if facts.prefix_tokens is not None
            else "an unknown number of prefix tokens"
        )
        raise LayerError(
            f"layer {layer!r} outputs {t.shape[1]} tokens of width {t.shape[2]}; with {known} "
            f"(facts: {facts.source}) they do not form a grid for a {size[0]}x{size[1]} input. "
            "Pass reshape=lambda t: t[:, P:].reshape(B, h, w, C).permute(0, 3, 1, 2) with your "
            "model's prefix-token count P and patch grid h x w"
        )

    return reshape
