"""Choosing the layer to explain.

``layer`` may be a dotted module name, a module, a list of either, ``"auto"``, ``"first"``,
``"middle"``, ``"last"`` or ``"conv:N"``:

* ``"auto"``: the documented default of a known family (:mod:`camscope.core.families`: ViT, Swin,
  VGG, Inception, ...); otherwise the last spatial feature layer. For timm models this is
  ``feature_info[-1]`` (the output of the last stage); otherwise a dry forward (eval mode, no
  grad, every mode restored) finds the outermost module that produces the last spatial feature
  map before pooling.
* ``"first"`` / ``"middle"`` / ``"last"``: the first, middle (``n // 2``) or last ``Conv2d`` in
  execution order, as in the layer study of Riyaz & Morem (2024, seed 002).
  Convs with a 1x1 output (squeeze-and-excitation gates on pooled vectors) are not counted.
  For transformers (ViT, DeiT, Swin: :func:`camscope.core.families.family_blocks`) they are the
  first, middle and last block instead.
* ``"conv:N"``: the N-th ``Conv2d`` in execution order (negative N counts from the end).

The dry forward is cached per model and input shape, so ``"auto"`` costs one extra forward only the
first time a model is seen.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor, nn

from ..errors import LayerError, UsageError, closest
from .concurrency import Hook, PassScope, model_lock

LayerSpec = Union[str, nn.Module, Sequence[str | nn.Module]]
ReshapeFn = Callable[[Tensor], Tensor]

_POOLING = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool2d,
    nn.MaxPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
)


@dataclass(frozen=True)
class LayerInfo:
    """One candidate layer as seen in a dry forward.

    Attributes:
        index: position among the candidates, in execution order.
        name: dotted module name.
        kind: the module's class name.
        shape: output shape ``(C, H, W)`` for one image.
        stride: input height divided by the output height.
        conv_index: position among ``Conv2d`` modules (what ``"conv:N"`` refers to), or None.
    """

    index: int
    name: str
    kind: str
    shape: tuple[int, ...]
    stride: float
    conv_index: int | None


@contextmanager
def preserved_modes(model: nn.Module) -> Any:
    """Restore every submodule's ``training`` flag on exit, also after an error."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def no_grad_forward(model: nn.Module, x: Tensor, mode: str = "eval") -> Any:
    """``model(x)`` without gradients, in eval mode (``mode="eval"``) or the model's own modes
    (``"as-is"``), the modes restored afterwards and the model's lock held meanwhile, so an
    ``explain`` on the same model in another thread never sees its modes change."""
    if mode not in ("eval", "as-is"):
        raise UsageError(f"mode must be 'eval' or 'as-is', got {mode!r}")
    with model_lock(model), preserved_modes(model), torch.no_grad():
        if mode == "eval":
            model.eval()
        return model(x)


def _spatial(out: Any) -> Tensor | None:
    if isinstance(out, Tensor) and out.ndim == 4 and out.is_floating_point():
        return out
    return None


def hooked_dry_forward(
    model: nn.Module, x: Tensor, hooks: Sequence[tuple[nn.Module, Hook]]
) -> None:
    """One eval-mode, no-grad forward on ``x[:1]`` with each ``(module, hook)`` attached as a
    forward hook that sees this pass only (another thread's forward of the model is not
    recorded). Modes and hooks are restored even if the forward fails."""
    scope = PassScope()
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(scope.hook(hook)))
        with preserved_modes(model), torch.no_grad(), scope.active():
            model.eval()
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()


def dry_run(
    model: nn.Module, x: Tensor, ranks: tuple[int, ...] = (4,)
) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """Run one eval-mode, no-grad forward on ``x[:1]`` and record every module's float output
    whose rank is in ``ranks`` (4: feature maps; 3: token sequences too).

    Returns ``(name, module, shape)`` in the order the modules finished, outermost last when a
    container returns its child's output. Modes and hooks are restored even if the forward fails.
    """
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def record(name: str) -> Hook:
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor) and output.ndim in ranks and output.is_floating_point():
                seen.append((name, module, tuple(output.shape[1:])))

        return hook

    hooked_dry_forward(model, x, [(m, record(n)) for n, m in model.named_modules() if n])
    return seen


def list_layers(model: nn.Module, x: Tensor) -> list[LayerInfo]:
    """Every module that outputs a spatial feature map, in execution order, with shapes and strides."""
    height = x.shape[-2]
    infos: list[LayerInfo] = []
    conv_count = 0
    seen_names: set[str] = set()
    records = dry_run(model, x)
    # Convs with a 1x1 output (squeeze-and-excitation gates on pooled vectors in EfficientNet,
    # MobileNet-V3, RegNet) have no spatial extent: no conv index unless every conv is 1x1.
    spatial_convs = any(isinstance(m, nn.Conv2d) and s[-1] * s[-2] > 1 for _, m, s in records)
    for name, module, shape in records:
        if name in seen_names:
            continue
        seen_names.add(name)
        conv_index = None
        if isinstance(module, nn.Conv2d) and (shape[-1] * shape[-2] > 1 or not spatial_convs):
            conv_index = conv_count
            conv_count += 1
        stride = height / shape[-2] if shape[-2] else float("inf")
        infos.append(LayerInfo(len(infos), name, type(module).__name__, shape, stride, conv_index))
    return infos


_AUTO_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], str]] = (
    weakref.WeakKeyDictionary()
)


def auto_layer(model: nn.Module, x: Tensor) -> str:
    """Name of the default layer to explain (see the module docstring)."""
    key = tuple(x.shape[1:])
    cached = _AUTO_CACHE.get(model, {}).get(key)
    if cached is None:
        cached = _find_auto_layer(model, x)
        _AUTO_CACHE.setdefault(model, {})[key] = cached
    return cached


def _find_auto_layer(model: nn.Module, x: Tensor) -> str:
    from .families import family_layer  # documented per-family defaults (ViT, Swin, VGG, ...)

    known = family_layer(model)
    if known is not None:
        return known
    feature_info = getattr(model, "feature_info", None)
    if isinstance(feature_info, list) and feature_info and isinstance(feature_info[-1], dict):
        name = feature_info[-1].get("module")
        if isinstance(name, str) and _has_submodule(model, name):
            return name
    candidates = [
        (name, shape)
        for name, module, shape in dry_run(model, x)
        if not isinstance(module, _POOLING)
    ]
    if not candidates:
        raise LayerError(
            f"{type(model).__name__} produces no 4-D feature map, so no layer can be chosen "
            "automatically; pass layer='<module name>' (and reshape=... for token outputs)"
        )
    wide = [c for c in candidates if c[1][-1] * c[1][-2] > 1]
    return (wide or candidates)[-1][0]


def _has_submodule(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return bool(name)


_CONV_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], list[str]]] = (
    weakref.WeakKeyDictionary()
)


def _conv_names(model: nn.Module, x: Tensor) -> list[str]:
    """Conv2d layers in execution order (one dry forward per model and input shape)."""
    key = tuple(x.shape[1:])
    cached = _CONV_CACHE.get(model, {}).get(key)
    if cached is not None:
        return cached
    names = [info.name for info in list_layers(model, x) if info.conv_index is not None]
    if not names:
        raise LayerError(f"{type(model).__name__} has no Conv2d layer that ran in a forward pass")
    _CONV_CACHE.setdefault(model, {})[key] = names
    return names


def depth_choices(model: nn.Module, x: Tensor) -> dict[str, str]:
    """``first`` / ``middle`` / ``last``: blocks of a transformer, else convs (see the module doc)."""
    from .families import family_blocks

    layers = family_blocks(model) or _conv_names(model, x)
    return {"first": layers[0], "middle": layers[len(layers) // 2], "last": layers[-1]}


def _resolve_one(model: nn.Module, spec: str | nn.Module, x: Tensor) -> tuple[str, nn.Module]:
    if isinstance(spec, nn.Module):
        for name, module in model.named_modules():
            if module is spec:
                return name, module
        raise LayerError(f"the given {type(spec).__name__} module is not part of the model")
    key = spec.strip()
    lowered = key.lower()
    if lowered == "auto":
        key = auto_layer(model, x)
    elif lowered in ("first", "middle", "last"):
        key = depth_choices(model, x)[lowered]
    elif lowered.startswith("conv:"):
        convs = _conv_names(model, x)
        try:
            key = convs[int(lowered.split(":", 1)[1])]
        except (ValueError, IndexError):
            raise LayerError(
                f"layer {spec!r}: the model has {len(convs)} conv layers, "
                f"use conv:0 .. conv:{len(convs) - 1} (or a negative index)"
            ) from None
    if not _has_submodule(model, key):
        names = [n for n, _ in model.named_modules() if n]
        raise LayerError(
            f"no layer named {spec!r} in {type(model).__name__}; closest: "
            f"{closest(key, names)}. Run `camscope layers MODEL` to list them."
        )
    return key, model.get_submodule(key)


def resolve_layers(model: nn.Module, spec: LayerSpec, x: Tensor) -> list[tuple[str, nn.Module]]:
    """Turn a layer specification into ``[(name, module), ...]`` without duplicates."""
    items: Sequence[str | nn.Module]
    if isinstance(spec, (str, nn.Module)):
        items = [spec]
    else:
        items = list(spec)
        if not items:
            raise LayerError("layer list is empty; pass at least one layer or 'auto'")
    resolved: list[tuple[str, nn.Module]] = []
    for item in items:
        name, module = _resolve_one(model, item, x)
        if name not in [n for n, _ in resolved]:
            resolved.append((name, module))
    return resolved


def to_spatial(t: Tensor, name: str) -> Tensor:
    """Default reshape of a layer output to ``(B, C, h, w)``: 4-D outputs pass through."""
    if t.ndim == 4:
        return t
    raise LayerError(
        f"layer {name!r} outputs shape {tuple(t.shape)}, not a (B, C, H, W) feature map; "
        "pick a convolutional layer or pass reshape=<callable mapping it to (B, C, H, W)>"
    )
