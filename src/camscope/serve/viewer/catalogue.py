"""What the viewer offers: every registered method with its cost and the pass budget of a
request, and colour-map lookup tables.

Costs are read from each :class:`~camscope.core.registry.MethodSpec`'s own declaration of the
model passes it adds (``passes``, the registry's cost that :func:`camscope.methods.
estimate_passes` and ``-m all``'s budget read), never from a list or from what a method imports:

* ``"guided pass"``: the method reads guided gradients (``needs_guided_gradients``), one extra
  guided forward and backward, shared by the guided methods of a call;
* ``"one pass"``: no pass beyond the engine's shared forward and backward (Grad-CAM, CAM,
  Eigen-CAM, ...);
* ``"few passes"``: a few passes of its own, at most :data:`FEW_PASSES_MAX` at the reference layer
  (FullGrad, DFF, Shapley-CAM, LeGrad, ...): run with the one-pass methods, no progress bar;
* ``"perturbation"``: more (the Score-CAM family, Ablation-CAM, occlusion, Recipro-CAM, SESS,
  Smooth Grad-CAM++): tens to thousands of passes, each method in a call of its own, reported
  with progress and cancellable.

The class is judged at a reference layer (:data:`REFERENCE`: 512 channels of 7 x 7 positions at
224 x 224 px, one target, default options), since it must not change with the model; the
number for a given model and layer is :func:`method_passes` (what the page shows beside the
badge and what the server's pass budget counts).

Colour maps are read from matplotlib when the server starts (their 256-entry tables), so the page
colourises maps in the browser with the colours :func:`camscope.viz.overlay` uses.

**The pass budget**: what a request may cost before anything runs. A perturbation method adds
tens to tens of thousands of model passes per image (SS-CAM at the last layer of
EfficientNet-Lite0: 35 x 1280 + 1 = 44,801, minutes on a CPU). Before a request runs, the passes
its methods would add are estimated for the model, the layers and the number of target classes
(:func:`method_passes`, what ``camscope explain -m all`` weighs against
:data:`camscope.core.cost.DEFAULT_PASS_BUDGET`); maps the server already keeps cost nothing. A
request over the budget is refused with :class:`OverBudget` (answered 400), naming each method's
estimate and the option that raises the budget (``camscope serve --max-passes N``). The guided
pass is shared by the guided methods of a call and counted once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...core.cost import estimate
from ...core.registry import MethodSpec
from ...errors import UsageError
from ...methods import get_method, method_specs
from ...viz import RECOMMENDED_COLORMAPS, get_colormap

if TYPE_CHECKING:
    from .pool import ModelSlot

ONE_PASS, GUIDED_PASS, FEW, PERTURBATION = "one pass", "guided pass", "few passes", "perturbation"
#: Passes per image at the reference layer up to which a method counts as "few passes".
FEW_PASSES_MAX = 8
#: The layer a method's cost class is judged at: channels, positions (h * w), input size.
REFERENCE = (512, 49, (224, 224))


def method_passes(
    specs: Sequence[MethodSpec],
    shapes: Mapping[str, tuple[int, int]],
    input_size: tuple[int, int],
    targets: int = 1,
) -> dict[str, int]:
    """Passes per image each method adds at the layers ``shapes`` (name -> channels, positions),
    by :func:`camscope.core.cost.estimate` from each method's registration."""
    channels = {name: c for name, (c, _) in shapes.items()}
    positions = {name: p for name, (_, p) in shapes.items()}
    return estimate(specs, channels, targets, None, input_size=input_size, positions=positions)


def method_cost(spec: MethodSpec) -> str:
    """``"one pass"``, ``"guided pass"``, ``"few passes"`` or ``"perturbation"`` (see the module
    docstring)."""
    if spec.needs_guided_gradients:
        return GUIDED_PASS
    channels, positions, size = REFERENCE
    passes = method_passes([spec], {"reference": (channels, positions)}, size)[spec.name]
    if passes == 0:
        return ONE_PASS
    return FEW if passes <= FEW_PASSES_MAX else PERTURBATION


def method_catalogue() -> list[dict[str, Any]]:
    """The rows of ``GET /api/methods``: every registered method in registration order, with its
    cost; ``passes_text`` is the registry's formula of the passes the method adds (``C``
    channels, ``N`` samples, ``K`` targets)."""
    return [
        {
            "name": s.name,
            "cost": method_cost(s),
            "class_specific": s.class_specific,
            "summary": s.summary,
            "paper": s.paper,
            "passes_text": s.passes_text,
        }
        for s in method_specs()
    ]


def colormap_luts(names: tuple[str, ...] = RECOMMENDED_COLORMAPS) -> dict[str, list[int]]:
    """``name -> [r0, g0, b0, r1, ...]``: each colour map's own 256-entry table, 0..255.

    matplotlib colours a value ``v`` in [0, 1] with entry ``min(floor(256 v), 255)`` of that
    table; the page does the same, so its colours are matplotlib's up to the rounding of each
    entry to an integer (half a level at most).
    """
    import numpy as np

    tables: dict[str, list[int]] = {}
    for name in names:
        cmap = get_colormap(name)
        rgb = np.asarray(cmap(np.arange(cmap.N)))[:, :3]
        if cmap.N != 256:  # resample other table sizes at the 256 levels the page uses
            rgb = np.asarray(cmap((np.arange(256) + 0.5) / 256.0))[:, :3]
        tables[name] = [int(v) for v in np.rint(rgb * 255.0).astype(np.uint8).reshape(-1)]
    return tables


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
