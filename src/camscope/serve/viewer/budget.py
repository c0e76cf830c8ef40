"""The server's pass budget: what a request may cost before anything runs.

A perturbation method adds tens to tens of thousands of model passes per image (SS-CAM at the
last layer of EfficientNet-Lite0: 35 x 1280 + 1 = 44,801, minutes on a CPU). Before a request
runs, the passes its methods would add are estimated from each method's registration for the
model, the layers and the number of target classes (:func:`.catalogue.method_passes`, by
:func:`camscope.core.cost.estimate`, what ``camscope explain -m all`` weighs against
:data:`camscope.core.cost.DEFAULT_PASS_BUDGET`); maps the server already keeps cost nothing.
A request over the budget is refused with :class:`OverBudget` (answered 400), naming each
method's estimate and the option that raises the budget (``camscope serve --max-passes N``).
The guided pass is shared by the guided methods of a call and counted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...errors import UsageError
from ...methods import get_method, method_specs
from .catalogue import method_passes

if TYPE_CHECKING:
    from .pool import ModelSlot


class OverBudget(UsageError):
    """The request would add more model passes than the server allows (answered 400)."""


def slot_passes(
    slot: ModelSlot,
    layers: tuple[str, ...],
    methods: Sequence[str] | None = None,
    targets: int = 1,
) -> dict[str, int]:
    """Passes per image each method (default: every registered one) adds on the slot's model at
    ``layers`` for ``targets`` classes."""
    specs = [get_method(m) for m in methods] if methods else method_specs()
    height, width = (int(v) for v in slot.spec.input_size)
    return method_passes(specs, slot.layer_shapes(layers), (height, width), targets)


def check_budget(
    slot: ModelSlot,
    layers: tuple[str, ...],
    methods: Sequence[str],
    targets: int,
    budget: int | None,
) -> None:
    """Raise :class:`OverBudget` when ``methods`` add more than ``budget`` passes per image
    (None: no budget)."""
    if budget is None or not methods:
        return
    counts = slot_passes(slot, layers, methods, targets)
    guided = {m for m in counts if get_method(m).needs_guided_gradients}
    total = sum(n for m, n in counts.items() if m not in guided)
    total += max((counts[m] for m in guided), default=0)
    if total <= budget:
        return
    listed = ", ".join(f"{m} {n:,}" for m, n in counts.items() if n)
    raise OverBudget(
        f"this request would run about {total:,} model passes per image ({listed}) on "
        f"{slot.name} at layer {','.join(layers)}, more than this server allows per request "
        f"({budget:,}); choose cheaper methods, a layer with fewer channels or fewer target "
        f"classes, or start the server with --max-passes {total}"
    )
