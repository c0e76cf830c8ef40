"""From the shared passes to an :class:`~camscope.core.result.Explanation`: every method at every
layer, the fused maps, what was skipped and why, and warnings about maps that are all zero.

A method that cannot run at a layer (CAM at a layer that does not feed global average pooling,
Ablation-CAM at a layer that runs twice, a perturbation method with a callable target, ...) raises
a :class:`~camscope.errors.CamscopeError`. Unless ``strict``, that skips the method at that layer
only: ``skipped["cam@blocks.4"]`` holds the reason, and the method's fused map is the mean over
the layers where it ran (the product for RefineCAM: ``MethodSpec.fusion``). A method that runs at no layer is skipped as a whole (``skipped["cam"]``).
When nothing at all can run, the error is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import CamscopeError
from .context import LayerContext
from .ops import first_component, fuse_layers, to_input_space
from .passes import Passes, is_callable_target, raise_failures
from .registry import MethodSpec
from .result import Explanation, log_warning
from .targets import TargetSpec

log = logging.getLogger(__name__)


def layer_map(spec: MethodSpec, ctx: LayerContext, eigen_smooth: bool = False) -> Tensor:
    """A method's raw map at layer resolution, ``(B, K, h, w)`` (guided: ``(B, K, 3, H, W)``).

    Channel contributions are summed over channels, or with ``eigen_smooth`` projected on their
    first principal component (Eigen smoothing, as in Muhammad & Yeasin 2020), which removes noise
    spread across many channels.
    """
    out = spec.fn(ctx).float()
    if not spec.channel_contributions:
        return out
    if eigen_smooth:
        b, k = out.shape[:2]
        return first_component(out.flatten(0, 1)).reshape(b, k, *out.shape[-2:])
    return out.sum(dim=2)


def _skips(
    specs: Sequence[MethodSpec],
    usable: list[str],
    method_errors: dict[str, dict[str, CamscopeError]],
    layer_errors: dict[str, CamscopeError],
) -> dict[str, str]:
    """``method`` or ``method@layer`` -> reason (see the module docstring)."""
    skipped: dict[str, str] = {}
    for spec in specs:
        errors = {
            **{lay: err for lay, err in layer_errors.items()},
            **method_errors.get(spec.name, {}),
        }
        if not errors:
            continue
        if all(lay in errors for lay in usable):
            reasons = {str(err) for err in errors.values()}
            skipped[spec.name] = (
                reasons.pop()
                if len(reasons) == 1
                else "; ".join(f"at {lay}: {err}" for lay, err in errors.items())
            )
        else:
            for lay, err in errors.items():
                skipped[f"{spec.name}@{lay}"] = str(err)
    return skipped


def _zero_map_warnings(
    layer_maps: dict[str, dict[str, Tensor]], specs: Sequence[MethodSpec], dead_layers: set[str]
) -> list[str]:
    messages = []
    for layer, maps in layer_maps.items():
        for spec in specs:
            if spec.name not in maps or (layer in dead_layers and spec.needs_gradients):
                continue  # covered by the layer's zero-gradient warning
            lit = maps[spec.name].flatten(2).any(-1)  # (B, K): the map is not all zero
            if bool(lit.all()):
                continue
            images = sorted({int(i) for i in (~lit).nonzero()[:, 0].tolist()})
            messages.append(
                f"{spec.name} at layer {layer!r}: the map is zero everywhere for image(s) "
                f"{images}: no position has positive evidence for the target there (the signed "
                "map is in .raw); try another layer or method"
            )
    return messages


def assemble(
    specs: Sequence[MethodSpec],
    passes: Passes,
    x: Tensor,
    targets: TargetSpec,
    *,
    eigen_smooth: bool = False,
    strict: bool = True,
    warnings: Sequence[str] = (),
) -> Explanation:
    """Run every method on every layer's context and put the :class:`Explanation` together."""
    size = (x.shape[-2], x.shape[-1])
    resolved = passes.resolved
    layer_maps: dict[str, dict[str, Tensor]] = {}
    layer_raw: dict[str, dict[str, Tensor]] = {}
    method_errors: dict[str, dict[str, CamscopeError]] = {}
    with torch.no_grad():
        for ctx in passes.contexts:
            raws: dict[str, Tensor] = {}
            for spec in specs:
                try:
                    raws[spec.name] = layer_map(spec, ctx, eigen_smooth)
                except CamscopeError as err:
                    if strict:
                        raise
                    method_errors.setdefault(spec.name, {})[ctx.layer] = err
            layer_raw[ctx.layer] = raws
            layer_maps[ctx.layer] = {name: to_input_space(raw, size) for name, raw in raws.items()}
    usable = [c.layer for c in passes.contexts]
    skipped = _skips(specs, usable, method_errors, passes.failed)
    done = [s for s in specs if s.name not in skipped]
    if not done:
        everything = {f"{n}@{lay}": e for n, d in method_errors.items() for lay, e in d.items()}
        raise_failures({**passes.failed, **everything})
    for key, reason in skipped.items():
        log.info("skipped %s: %s", key, reason)
    layers = [lay for lay in usable if layer_maps[lay]]
    fused: dict[str, Tensor] = {}
    raw: dict[str, Tensor] = {}
    single: list[str] = []
    with torch.no_grad():
        for spec in done:
            ran = [lay for lay in layers if spec.name in layer_maps[lay]]
            stack = torch.stack([layer_maps[lay][spec.name] for lay in ran])
            fused[spec.name] = fuse_layers(stack, spec.fusion)
            raw[spec.name] = layer_raw[ran[0]][spec.name]
            if spec.fusion != "mean" and len(ran) == 1:
                single.append(
                    f"{spec.name} at the single layer {ran[0]!r} is its base method's map there: "
                    "it fuses several layers, so pass a list of layers from deep to shallow "
                    "(e.g. the last three stages)"
                )
    squeeze = not resolved.per_class

    def shape(t: Tensor) -> Tensor:
        return t.squeeze(1) if squeeze else t

    dead = passes.zero_gradient_layers
    notes = [*warnings, *passes.warnings, *_zero_map_warnings(layer_maps, done, dead), *single]
    for note in notes[len(warnings) :]:
        log_warning(log, note)
    probabilities = None
    kind = "none"
    logits = passes.logits
    if logits is not None and resolved.head is not None and not is_callable_target(targets):
        probabilities = shape(resolved.head.probabilities(logits, resolved.class_ids))
        kind = resolved.head.probability_kind
    return Explanation(
        maps={k: shape(v) for k, v in fused.items()},
        raw={k: shape(v) for k, v in raw.items()},
        layer=layers[0] if len(layers) == 1 else layers,
        targets=shape(resolved.class_ids),
        scores=shape(resolved.scores.detach().float()),
        probabilities=probabilities,
        logits=logits,
        layer_maps={lay: {k: shape(v) for k, v in layer_maps[lay].items()} for lay in layers},
        layer_raw={lay: {k: shape(v) for k, v in layer_raw[lay].items()} for lay in layers},
        skipped=skipped,
        warnings=notes,
        probability_kind=kind,
    )
