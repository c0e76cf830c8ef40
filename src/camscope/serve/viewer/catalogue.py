"""What the viewer offers: every registered method with its cost, and colour-map lookup tables.

Costs are derived from each :class:`~camscope.core.registry.MethodSpec`, never kept in a list:

* ``"guided pass"``: the method reads guided gradients (``needs_guided_gradients``), one extra
  guided forward and backward;
* ``"perturbation"``: the method's module runs passes through :mod:`camscope.perturbation`
  (Score-CAM family, Ablation-CAM, Smooth Grad-CAM++): tens to thousands of forward passes,
  reported with progress and cancellable;
* ``"one pass"``: everything else, served by the engine's one forward and one backward pass
  (``needs_gradients``) or by the forward alone (CAM, Eigen-CAM).

Colour maps are read from matplotlib when the server starts (their 256-entry tables), so the page
colourises maps in the browser with the colours :func:`camscope.viz.overlay` uses.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ...core.registry import MethodSpec
from ...viz import RECOMMENDED_COLORMAPS, get_colormap

ONE_PASS, GUIDED_PASS, PERTURBATION = "one pass", "guided pass", "perturbation"
COSTS = (ONE_PASS, GUIDED_PASS, PERTURBATION)
_PERTURBATION_PACKAGE = "camscope.perturbation"


def _uses_perturbation(spec: MethodSpec) -> bool:
    """Whether the method's module imports anything from :mod:`camscope.perturbation`."""
    module = sys.modules.get(spec.fn.__module__)
    if module is None:
        return False
    return any(
        getattr(value, "__module__", "").startswith(_PERTURBATION_PACKAGE)
        or getattr(value, "__name__", "").startswith(_PERTURBATION_PACKAGE)
        for value in vars(module).values()
    )


def method_cost(spec: MethodSpec) -> str:
    """``"one pass"``, ``"guided pass"`` or ``"perturbation"`` (see the module docstring)."""
    if spec.needs_guided_gradients:
        return GUIDED_PASS
    if _uses_perturbation(spec):
        return PERTURBATION
    return ONE_PASS


@dataclass(frozen=True)
class MethodInfo:
    """One row of ``GET /api/methods``."""

    name: str
    cost: str
    class_specific: bool
    summary: str
    paper: str


def method_catalogue() -> list[MethodInfo]:
    """Every registered method in registration order, with its cost."""
    from ...methods import method_specs

    return [
        MethodInfo(s.name, method_cost(s), s.class_specific, s.summary, s.paper)
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
