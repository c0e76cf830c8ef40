"""What the viewer offers: every registered method with its cost, and colour-map lookup tables.

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ...core.cost import estimate
from ...core.registry import MethodSpec
from ...methods import method_specs
from ...viz import RECOMMENDED_COLORMAPS, get_colormap

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


@dataclass(frozen=True)
class MethodInfo:
    """One row of ``GET /api/methods``: ``passes_text`` is the registry's formula of the passes
    the method adds (``C`` channels, ``N`` samples, ``K`` targets)."""

    name: str
    cost: str
    class_specific: bool
    summary: str
    paper: str
    passes_text: str


def method_catalogue() -> list[MethodInfo]:
    """Every registered method in registration order, with its cost."""
    return [
        MethodInfo(s.name, method_cost(s), s.class_specific, s.summary, s.paper, s.passes_text)
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
