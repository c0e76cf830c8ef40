"""Pictures: heat-map overlays, guided-gradient images and method grids.

* :mod:`.colour`: colour maps as lookup tables, :func:`overlay` (uint8/float32, in row blocks),
  :func:`guided_to_rgb`, :func:`to_display_rgb` (the one way a picture is made RGB and shrunk);
* :mod:`.grid`: :func:`compose_grid` / :func:`save_grid`, composed with numpy and PIL;
* :mod:`.confusion`: :func:`confusion_png`, the confusion matrix as a picture;
* :mod:`.boxes`: :func:`draw_boxes`, detections drawn on a picture.

Everything here takes and returns numpy arrays and PIL images; maps arrive already normalised to
[0, 1] (see :class:`camscope.core.result.Explanation`) and resized to the picture
(:func:`camscope.io.resize_map`). Nothing opens a window, switches matplotlib's backend or leaves
pyplot state behind; matplotlib is used only for its colour maps (and :func:`grid_figure`,
:func:`confusion_png`).

Colour maps: the default is ``"inferno"``, which is perceptually uniform and stays readable in
greyscale print and for colour-blind readers; ``"jet"`` and ``"turbo"`` (the traditional Grad-CAM
look) and every other matplotlib colour map name are accepted.

This package may import :mod:`camscope.errors` only.

Example:
    >>> from camscope import viz
    >>> picture = viz.overlay(image, heatmap, colormap="inferno", alpha=0.5)  # doctest: +SKIP
    >>> viz.save_grid("grid.png", image, [("layer4", [viz.Panel("gradcam", heatmap)])])  # doctest: +SKIP
"""

from __future__ import annotations

from .boxes import Box, draw_boxes
from .colour import (
    CHART_COLOURS,
    DEFAULT_COLORMAP,
    RECOMMENDED_COLORMAPS,
    blend,
    chart_colour,
    check_colormap,
    colorize,
    colormap_lut,
    get_colormap,
    guided_spread,
    guided_to_rgb,
    overlay,
    to_display_rgb,
)
from .confusion import confusion_png
from .grid import GridLayout, Panel, compose_grid, grid_figure, grid_layout, printable, save_grid

__all__ = [
    "CHART_COLOURS",
    "DEFAULT_COLORMAP",
    "RECOMMENDED_COLORMAPS",
    "Box",
    "GridLayout",
    "Panel",
    "blend",
    "chart_colour",
    "check_colormap",
    "colorize",
    "colormap_lut",
    "compose_grid",
    "confusion_png",
    "draw_boxes",
    "get_colormap",
    "grid_figure",
    "grid_layout",
    "guided_spread",
    "guided_to_rgb",
    "overlay",
    "printable",
    "save_grid",
    "to_display_rgb",
]
