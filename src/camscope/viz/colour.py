"""Pictures: heat-map overlays, guided-gradient images and method grids.

Everything here takes and returns numpy arrays and PIL images; maps arrive already normalised to
[0, 1] (see :class:`camscope.core.engine.Explanation`) and resized to the picture
(:func:`camscope.io.resize_map`). Figures are drawn on matplotlib's Agg canvas through
``matplotlib.figure.Figure`` directly, so nothing here opens a window, switches the global backend
or leaves pyplot state behind.

Colour maps: the default is ``"inferno"``, which is perceptually uniform and stays readable in
greyscale print and for colour-blind readers; ``"jet"`` and ``"turbo"`` (the traditional Grad-CAM
look) and every other matplotlib colour map name are accepted.

Example:
    >>> from camscope import viz
    >>> picture = viz.overlay(image, heatmap, colormap="inferno", alpha=0.5)  # doctest: +SKIP
    >>> viz.save_grid("grid.png", image, [("layer4", [viz.Panel("gradcam", heatmap)])])  # doctest: +SKIP
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .errors import UsageError, closest

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

DEFAULT_COLORMAP = "inferno"
#: Colour maps suggested in messages and ``--help``; any matplotlib colour map name works.
RECOMMENDED_COLORMAPS = ("inferno", "magma", "viridis", "plasma", "cividis", "turbo", "jet")

_GRID_DPI = 150
_CELL_INCHES = 2.2  # width of one grid cell
_GRID_MAX_SIDE = 640  # pixels: pictures are shrunk to this for the grid (the PNGs keep full size)
_TITLE_WIDTH = 24  # characters per title line before wrapping


@dataclass
class Panel:
    """One cell of a grid: a title and either a heat map (H, W) in [0, 1] or an RGB image."""

    title: str
    heatmap: np.ndarray | None = None
    rgb: np.ndarray | None = None


def get_colormap(name: str) -> Colormap:
    """Return the matplotlib colour map called ``name``.

    Raises:
        UsageError: unknown name; the message lists the closest valid names.
    """
    import matplotlib

    registry = matplotlib.colormaps
    if not isinstance(name, str) or name not in registry:
        raise UsageError(
            f"unknown colormap {name!r}; closest: {closest(str(name), list(registry))}. "
            f"Recommended: {', '.join(RECOMMENDED_COLORMAPS)} (any matplotlib colormap name works)."
        )
    return registry[name]


def check_colormap(name: str) -> str:
    """Validate a colour map name early (before any model work); returns it unchanged."""
    get_colormap(name)
    return name


def _check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise UsageError(f"alpha must be between 0 and 1 (heat-map opacity); got {alpha}")
    return float(alpha)


def _as_rgb_array(image: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` float64 in [0, 255]."""
    if not isinstance(image, Image.Image):
        raise UsageError(f"expected a PIL image, got {type(image).__name__}")
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _clean_map(heatmap: np.ndarray) -> np.ndarray:
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise UsageError(
            f"a heat map must be a 2-D (H, W) array; got shape {heat.shape}. "
            "Pick one image (and one target) of the batch first."
        )
    return np.clip(np.nan_to_num(heat, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def colorize(heatmap: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Map a heat map in [0, 1] to colours: ``(H, W, 3)`` float64 in [0, 1].

    Values outside [0, 1] are clipped and NaN counts as 0.
    """
    cmap = get_colormap(colormap)
    return np.asarray(cmap(_clean_map(heatmap)), dtype=np.float64)[..., :3]


def overlay(
    image: Image.Image, heatmap: np.ndarray, colormap: str = DEFAULT_COLORMAP, alpha: float = 0.5
) -> Image.Image:
    """Blend a coloured heat map over an image.

    Each pixel becomes ``(1 - alpha) * image + alpha * 255 * colormap(heatmap)``, rounded to the
    nearest integer: ``alpha=0`` gives the image back, ``alpha=1`` the coloured map alone.

    Args:
        image: the picture (converted to RGB if needed).
        heatmap: ``(H, W)`` map in [0, 1] at the picture's resolution (``H = image.height``);
            resize maps with :func:`camscope.io.resize_map` first.
        colormap: matplotlib colour map name.
        alpha: opacity of the heat map, in [0, 1].

    Returns:
        A new RGB image of the same size.

    Raises:
        UsageError: unknown colour map, alpha outside [0, 1], or a map of another size.
    """
    alpha = _check_alpha(alpha)
    base = _as_rgb_array(image)
    heat = _clean_map(heatmap)
    if heat.shape != base.shape[:2]:
        raise UsageError(
            f"heat map shape {heat.shape} does not match the image ({base.shape[0]}, "
            f"{base.shape[1]}) (height, width); resize it with camscope.io.resize_map first"
        )
    colours = colorize(heat, colormap) * 255.0
    blended = (1.0 - alpha) * base + alpha * colours
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), mode="RGB")


def guided_to_rgb(gradients: np.ndarray) -> np.ndarray:
    """Render signed input gradients ``(3, H, W)`` as an ``(H, W, 3)`` uint8 picture.

    The usual display of guided backpropagation (Springenberg et al., 2015): the gradients are
    centred on their mean, divided by a robust spread ``s`` and mapped around mid-grey,

    .. math::
        \\text{rgb} = \\mathrm{clip}\\Big(\\tfrac{1}{2} + \\tfrac{g - \\bar g}{2 s}, 0, 1\\Big)\\cdot 255

    where ``s`` is the 99th percentile of ``|g - mean|``, so the strongest 1 % of values saturate
    instead of a single outlier washing everything else out to grey. Mid-grey (128) means "no
    gradient"; brighter and darker colours are positive and negative evidence per channel. An all-
    zero (or constant) input gives a uniform mid-grey image.

    Deviation: the common recipe divides by the standard deviation and scales by 0.1; the percentile
    gives similar pictures and is less sensitive to a few huge values.
    """
    grad = np.asarray(gradients, dtype=np.float64)
    if grad.ndim != 3 or grad.shape[0] != 3:
        raise UsageError(
            f"guided gradients must have shape (3, H, W); got {grad.shape}. "
            "Pick one image (and one target) of the batch first."
        )
    grad = np.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    centred = grad - grad.mean()
    spread = float(np.percentile(np.abs(centred), 99.0))
    if not spread > 1e-12:
        spread = float(np.abs(centred).max())
    scaled = 0.5 + centred / (2.0 * spread) if spread > 1e-12 else np.full_like(centred, 0.5)
    rgb = np.clip(scaled, 0.0, 1.0).transpose(1, 2, 0)
    return np.rint(rgb * 255.0).astype(np.uint8)


def _shrink(image: Image.Image) -> Image.Image:
    image = image.convert("RGB")
    scale = _GRID_MAX_SIDE / max(image.size)
    if scale >= 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _fit_map(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a map in [0, 1] to ``size`` = (width, height) for display (bilinear)."""
    heat = _clean_map(heatmap).astype(np.float32)
    if heat.shape == (size[1], size[0]):
        return heat
    resized = Image.fromarray(heat, mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64)


def _fit_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise UsageError(f"a panel's rgb must be an (H, W, 3) array; got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(np.asarray(arr, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    if arr.shape[:2] != (size[1], size[0]):
        arr = np.asarray(Image.fromarray(arr, mode="RGB").resize(size, Image.Resampling.BILINEAR))
    return arr


def _wrap(title: str) -> str:
    lines = []
    for line in title.splitlines() or [""]:
        lines.extend(textwrap.wrap(line, _TITLE_WIDTH) or [""])
    return "\n".join(lines)


def grid_figure(
    image: Image.Image,
    rows: Sequence[tuple[str, Sequence[Panel]]],
    *,
    colormap: str = DEFAULT_COLORMAP,
    alpha: float = 0.5,
    title: str = "",
) -> Figure:
    """Build the figure that :func:`save_grid` writes (see there); the caller owns it.

    The figure has ``len(rows) * (1 + max panels per row)`` image axes (unused cells are hidden)
    plus one colour-bar axis when any panel holds a heat map.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    cmap = get_colormap(colormap)
    alpha = _check_alpha(alpha)
    if not rows:
        raise UsageError("save_grid needs at least one row of panels")
    for _, panels in rows:
        for panel in panels:
            if (panel.heatmap is None) == (panel.rgb is None):
                raise UsageError(
                    f"panel {panel.title!r} must have exactly one of heatmap= or rgb= set"
                )
    shown = _shrink(image)
    width, height = shown.size
    n_rows = len(rows)
    n_cols = 1 + max(len(panels) for _, panels in rows)
    has_heat = any(p.heatmap is not None for _, panels in rows for p in panels)
    title_lines = max(
        (_wrap(p.title).count("\n") + 1 for _, panels in rows for p in panels), default=1
    )
    cell_h = _CELL_INCHES * height / width
    fig_w = n_cols * _CELL_INCHES + (0.7 if has_heat else 0.0) + 0.4
    fig_h = n_rows * (cell_h + 0.2 * title_lines + 0.12) + (0.4 if title else 0.1)
    layout = ConstrainedLayoutEngine(w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.04)
    fig = Figure(figsize=(fig_w, fig_h), dpi=_GRID_DPI, layout=layout)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    picture = np.asarray(shown)
    for r, (row_label, panels) in enumerate(rows):
        first = axes[r, 0]
        first.imshow(picture, interpolation="antialiased")
        first.set_title("input" if r == 0 else "", fontsize=10)
        if row_label:
            first.set_ylabel(_wrap(row_label), fontsize=10)
        for c in range(1, n_cols):
            ax = axes[r, c]
            if c - 1 >= len(panels):
                ax.set_axis_off()
                continue
            panel = panels[c - 1]
            if panel.heatmap is not None:
                heat = _fit_map(panel.heatmap, (width, height))
                ax.imshow(np.asarray(overlay(shown, heat, colormap, alpha)))
            else:
                assert panel.rgb is not None
                ax.imshow(_fit_rgb(panel.rgb, (width, height)))
            ax.set_title(_wrap(panel.title), fontsize=10, linespacing=1.1)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
    if has_heat:
        mappable = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap)
        bar = fig.colorbar(mappable, ax=axes, fraction=0.025, pad=0.01, aspect=max(12, 18 * n_rows))
        bar.set_label("relevance (normalised)", fontsize=9)
        bar.ax.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def save_grid(
    path: str | Path,
    image: Image.Image,
    rows: Sequence[tuple[str, Sequence[Panel]]],
    *,
    colormap: str = DEFAULT_COLORMAP,
    alpha: float = 0.5,
    title: str = "",
) -> None:
    """Write a comparison grid: the input, then one column per panel, one row per entry of ``rows``.

    Args:
        path: output file; the format follows the suffix (``.png``, ``.pdf``, ``.svg``, ...).
        image: the input picture; column 0 of every row (shrunk to at most 640 px for the figure).
        rows: ``(row label, panels)`` pairs, e.g. one row per layer or per target class. Heat-map
            panels are drawn as overlays (:func:`overlay`) and share one colour bar; RGB panels
            (guided backpropagation) are drawn as they are.
        colormap: matplotlib colour map name (default ``"inferno"``).
        alpha: heat-map opacity in [0, 1].
        title: optional figure title.

    Example:
        >>> save_grid("cat.grid.png", img, [("", [Panel("gradcam\\ntabby (p=0.93)", cam)])])  # doctest: +SKIP

    Raises:
        UsageError: unknown colour map, bad alpha, empty ``rows`` or a malformed panel.
    """
    fig = grid_figure(image, rows, colormap=colormap, alpha=alpha, title=title)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=_GRID_DPI, facecolor="white")
