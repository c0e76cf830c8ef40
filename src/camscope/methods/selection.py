"""Which methods a run uses: names or ``all``, and the pass budget.

Every command that takes methods (``camscope explain`` as pictures or as a data-set job, the
data-set job of library callers) turns what was asked into methods here:
:func:`parse_methods` reads a comma list or ``all`` (every registered method), and
:func:`choose_methods` applies the pass budget with one dry forward: with ``all``, the methods
that cannot explain the model at all (:func:`camscope.methods.unsuited_methods`) and those over
the budget of model passes per image (:data:`camscope.core.cost.DEFAULT_PASS_BUDGET`) are left
out, each with the reason, unless ``allow_slow``; methods named one by one always run, with a
note when they are over the budget.

Example:
    >>> choice = choose_methods("all", model, spec.example_input(), "auto")  # doctest: +SKIP
    >>> choice.left_out["sscam"]  # doctest: +SKIP
    'about 44,801 model passes per image, over the budget of 2,000; allow_slow ...'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.registry import lookup, registered_names
from ..errors import UsageError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ..core.layers import LayerSpec, ReshapeFn
    from ..core.targets import TargetSpec


def split_names(values: str | Sequence[str] | None) -> list[str]:
    """Flatten comma lists: ``["a,b", "c"]`` or ``"a, b,c"`` -> ``["a", "b", "c"]``."""
    items = [values] if isinstance(values, str) else list(values or [])
    return [part.strip() for value in items for part in value.split(",") if part.strip()]


def means_all(asked: str | Sequence[str]) -> bool:
    """Whether ``asked`` is ``all``."""
    return [name.lower() for name in split_names(asked)] == ["all"]


def parse_methods(asked: str | Sequence[str]) -> list[str]:
    """A comma list of method names (any spelling the registry knows), or ``all``, as canonical
    names without duplicates; an unknown name is a usage error with close names."""
    names = split_names(asked)
    if not names:
        raise UsageError("--method is empty; name at least one method (see `camscope methods`)")
    if means_all(asked):
        return registered_names()
    result: list[str] = []
    for name in names:
        canonical = lookup(name).name
        if canonical not in result:
            result.append(canonical)
    return result


def unsuited_methods(model: nn.Module, methods: Sequence[str]) -> dict[str, str]:
    """The methods among ``methods`` that cannot explain ``model`` at all, each with the reason
    (transformer-only methods on a model whose attention :mod:`camscope.core.attention` cannot
    read). ``-m all`` leaves them out instead of reporting them skipped."""
    from ..core.attention import transformer_layout
    from ..errors import UnsupportedModelError

    wanted = [lookup(name) for name in methods]
    if not any(spec.models == "transformer" for spec in wanted):
        return {}
    try:
        transformer_layout(model)
    except UnsupportedModelError as err:
        return {spec.name: str(err) for spec in wanted if spec.models == "transformer"}
    return {}


def estimate_passes(
    model: nn.Module,
    x: Tensor,
    methods: Sequence[str],
    layer: LayerSpec = "auto",
    *,
    targets: int = 1,
    method_options: Mapping[str, Any] | None = None,
    reshape: ReshapeFn | None = None,
    aug_smooth: bool = False,
) -> dict[str, int]:
    """Model passes per image each method would add beyond the shared forward and backward, for
    ``model`` at ``layer`` (one dry forward to count the layers' channels), with ``targets``
    classes per image and, with ``aug_smooth``, every augmented copy counted (see
    :mod:`camscope.core.cost`; upper bounds for the Score-CAM family)."""
    from ..core.cost import estimate, layer_shapes
    from ..core.layers import resolve_layers

    specs = [lookup(name) for name in methods]
    layers = resolve_layers(model, layer, x)
    shapes = layer_shapes(model, layers, x, reshape)
    channels = {name: c for name, (c, _) in shapes.items()}
    positions = {name: p for name, (_, p) in shapes.items()}
    size = (int(x.shape[-2]), int(x.shape[-1]))
    return estimate(
        specs,
        channels,
        targets,
        method_options,
        input_size=size,
        positions=positions,
        aug_smooth=aug_smooth,
    )


@dataclass
class MethodChoice:
    """The methods a run will use after the pass budget.

    Attributes:
        methods: the methods to run, in the order asked.
        layers: the layer names the methods were estimated at (resolved on the dry forward).
        left_out: method -> why it was left out (``all``: over the budget, or unsuited).
        estimates: method -> estimated model passes per image beyond the shared ones.
        notes: what the user should know (methods named one by one that are over the budget).
    """

    methods: list[str]
    layers: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    estimates: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def said(self) -> list[str]:
        """What to tell the user: each method left out and why, then the notes."""
        return [f"left out {m}: {why}" for m, why in self.left_out.items()] + self.notes


def choose_methods(
    asked: str | Sequence[str],
    model: nn.Module,
    x: Tensor,
    layer: LayerSpec = "auto",
    *,
    target: TargetSpec = "top1",
    method_options: Mapping[str, Any] | None = None,
    allow_slow: bool = False,
    budget: int | None = None,
    aug_smooth: bool = False,
) -> MethodChoice:
    """The methods ``asked`` (names or ``all``) under the pass budget, estimated on the example
    input ``x`` (one dry forward, modes and hooks restored) at ``layer`` for ``target`` (a top-k
    target counts ``k`` classes per image); ``budget`` defaults to
    :data:`~camscope.core.cost.DEFAULT_PASS_BUDGET` passes per image."""
    from ..core.cost import DEFAULT_PASS_BUDGET, within_budget
    from ..core.layers import resolve_layers
    from ..core.targets import parse_topk

    methods = parse_methods(asked)
    everything = means_all(asked)
    layers = [name for name, _ in resolve_layers(model, layer, x)]
    unsuited = unsuited_methods(model, methods) if everything else {}
    methods = [m for m in methods if m not in unsuited]
    targets = (parse_topk(target) or 1) if isinstance(target, str) else 1
    estimates = estimate_passes(
        model,
        x,
        methods,
        layers,
        targets=targets,
        method_options=method_options,
        aug_smooth=aug_smooth,
    )
    choice = MethodChoice(methods, layers, dict(unsuited), estimates)
    _, over = within_budget(estimates, budget or DEFAULT_PASS_BUDGET)
    if everything and not allow_slow:
        choice.methods = [m for m in methods if m not in over]
        choice.left_out.update(
            {m: f"{why}; allow_slow (--allow-slow) runs it" for m, why in over.items()}
        )
    else:
        choice.notes = [
            f"{m}: {why}; this will take a while (each pass is a forward of the model)"
            for m, why in over.items()
        ]
    return choice
