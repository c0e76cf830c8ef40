"""Comparison grids composed with numpy and PIL: no matplotlib figure per picture.

A grid is the input once (top left), then rows of panels: one row per entry of ``rows`` (a layer,
a target class), wrapped after ``max_columns`` panels. Heat-map panels are overlays
(:func:`~camscope.viz.colour.overlay`) and share the colour bar drawn under the grid; signed
input-space panels (guided backpropagation) get their own mid-grey-centred bar. Titles are plain
text (no math markup, control characters shown as escapes), drawn with DejaVu Sans, the font
matplotlib ships, or PIL's default font when that file is missing.
"""

from __future__ import annotations

import importlib.util
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import UsageError
from ..outputs import write_picture
from .colour import DEFAULT_COLORMAP, blend, check_alpha, clean_map, colormap_lut, to_display_rgb

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CELL = 320  # pixels: the longer side of every picture in a grid
MAX_COLUMNS = 6  # panels per row before a row wraps
_GAP, _MARGIN, _LINE = 8, 12, 18
_TEXT, _SMALL, _BIG = 15, 14, 17  # font sizes (pixels): row labels, titles, header
_LEGEND_W, _LEGEND_H = 640, 40
_BACKGROUND, _INK, _MUTED = (255, 255, 255), (20, 20, 20), (90, 90, 90)


@dataclass
class Panel:
    """One cell of a grid: a title and either a heat map (H, W) in [0, 1] or an RGB image.

    ``signed`` marks an RGB panel that shows signed input-space gradients around mid-grey (guided
    backpropagation), which gets its own colour bar.
    """

    title: str
    heatmap: np.ndarray | None = None
    rgb: np.ndarray | None = None
    signed: bool = False


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
        if os.path.isfile(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def printable(text: str) -> str:
    """``text`` with control and format characters shown as escapes (``\\x1b``), newlines kept."""
    return "".join(
        ch
        if ch == "\n" or unicodedata.category(ch)[0] != "C"
        else ch.encode("unicode_escape").decode("ascii")
        for ch in str(text)
    )


def _wrap(text: str, width: int, face: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> list[str]:
    lines: list[str] = []
    for paragraph in printable(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if face.getlength(candidate) <= width or not line:
                line = candidate
            else:
                lines.append(line)
                line = word
            while face.getlength(line) > width and len(line) > 1:  # a word wider than the cell
                cut = max(1, int(len(line) * width / face.getlength(line)))
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return lines


def _fit_heat(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    heat = clean_map(heatmap)
    if heat.shape == (size[1], size[0]):
        return heat
    resized = Image.fromarray(np.ascontiguousarray(heat)).resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _fit_rgb(rgb: np.ndarray, size: tuple[int, int]) -> Image.Image:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise UsageError(f"a panel's rgb must be an (H, W, 3) array; got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(np.asarray(arr, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    picture = Image.fromarray(arr, mode="RGB")
    return picture if picture.size == size else picture.resize(size, Image.Resampling.BILINEAR)


def _bar(width: int, height: int, colours: np.ndarray) -> Image.Image:
    index = np.linspace(0, len(colours) - 1, width).round().astype(int)
    strip = np.clip(np.rint(colours[index]), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(strip[None], height, axis=0), mode="RGB")


@dataclass
class GridLayout:
    """Where everything of a grid goes (pixels); :func:`compose_grid` draws it.

    Attributes:
        size: ``(width, height)`` of the whole grid.
        cell: ``(width, height)`` of every picture.
        header: title lines at the top.
        labels: ``(y, text)`` of each row label.
        input_at: top-left corner of the input picture (drawn once).
        panels: ``(panel, (x, y), title lines)``; ``y`` is the top of the title.
        title_height: pixels reserved above every picture for its title.
        legends: ``"relevance"`` and/or ``"guided"``, in drawing order, with their top ``y``.
    """

    size: tuple[int, int]
    cell: tuple[int, int]
    header: list[str]
    labels: list[tuple[int, str]]
    input_at: tuple[int, int]
    panels: list[tuple[Panel, tuple[int, int], list[str]]]
    title_height: int
    legends: list[tuple[str, int]]


def grid_layout(
    image_size: tuple[int, int],
    rows: Sequence[tuple[str, Sequence[Panel | None]]],
    *,
    title: str = "",
    cell: int = CELL,
    max_columns: int = MAX_COLUMNS,
) -> GridLayout:
    """Place the input once, each row's label and panels (wrapping after ``max_columns``) and the
    legends: one colour bar for heat maps, one for signed (guided) panels."""
    if not rows:
        raise UsageError("save_grid needs at least one row of panels")
    for _, panels in rows:
        for panel in panels:
            if panel is not None and (panel.heatmap is None) == (panel.rgb is None):
                raise UsageError(
                    f"panel {panel.title!r} must have exactly one of heatmap= or rgb= set"
                )
    max_columns = max(1, int(max_columns))
    scale = cell / max(image_size)
    width = max(1, round(image_size[0] * scale))
    height = max(1, round(image_size[1] * scale))
    face, big = font(_SMALL), font(_BIG)
    titles = {id(p): _wrap(p.title, width, face) for _, ps in rows for p in ps if p is not None}
    title_h = _LINE * max([1, *(len(lines) for lines in titles.values())]) + 4
    columns = 1 + min(max_columns, max(len(p) for _, p in rows) or 1)
    grid_w = 2 * _MARGIN + columns * width + (columns - 1) * _GAP
    header = _wrap(title, grid_w - 2 * _MARGIN, big) if title else []
    y = _MARGIN + len(header) * (_LINE + 4) + (4 if header else 0)
    labels: list[tuple[int, str]] = []
    placed: list[tuple[Panel, tuple[int, int], list[str]]] = []
    input_at: tuple[int, int] | None = None
    for label, panels in rows:
        if label:
            labels.append((y, printable(label).replace("\n", " ")))
            y += _LINE + 6
        for start in range(0, max(len(panels), 1), max_columns):
            if input_at is None:
                input_at = (_MARGIN, y)
            for column, panel in enumerate(panels[start : start + max_columns], 1):
                if panel is not None:  # None keeps a column free
                    x = _MARGIN + column * (width + _GAP)
                    placed.append((panel, (x, y), titles[id(panel)]))
            y += title_h + height + _GAP
    legends = []
    if any(p.heatmap is not None for p, _, _ in placed):
        legends.append("relevance")
    if any(p.signed for p, _, _ in placed):
        legends.append("guided")
    side_by_side = len(legends) == 2 and grid_w >= 2 * _LEGEND_W
    tops = (
        [y + 4] * len(legends)
        if side_by_side
        else [y + 4 + i * _LEGEND_H for i in range(len(legends))]
    )
    y += (_LEGEND_H if side_by_side else _LEGEND_H * len(legends)) + _MARGIN
    return GridLayout(
        size=(grid_w, y),
        cell=(width, height),
        header=header,
        labels=labels,
        input_at=input_at or (_MARGIN, _MARGIN),
        panels=placed,
        title_height=title_h,
        legends=list(zip(legends, tops)),
    )


def compose_grid(
    image: Image.Image,
    rows: Sequence[tuple[str, Sequence[Panel | None]]],
    *,
    colormap: str = DEFAULT_COLORMAP,
    alpha: float = 0.5,
    title: str = "",
    heat_legend: str = "relevance, each map scaled to its own maximum",
    cell: int = CELL,
    max_columns: int = MAX_COLUMNS,
) -> Image.Image:
    """The grid as an RGB picture (see the module docstring and :func:`save_grid`)."""
    alpha = check_alpha(alpha)
    lut = colormap_lut(colormap)
    shown = to_display_rgb(image)
    layout = grid_layout(shown.size, rows, title=title, cell=cell, max_columns=max_columns)
    if shown.size != layout.cell:
        shown = shown.resize(layout.cell, Image.Resampling.BILINEAR, reducing_gap=3.0)
    base = np.asarray(shown)
    face, small, big = font(_TEXT), font(_SMALL), font(_BIG)
    canvas = Image.new("RGB", layout.size, _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(layout.header):
        draw.text((_MARGIN, _MARGIN + i * (_LINE + 4)), line, font=big, fill=_INK)
    for y, text in layout.labels:
        draw.text((_MARGIN, y), text, font=face, fill=_INK)
    x, y = layout.input_at
    _title(draw, (x, y), ["input"], small, layout.cell[0])
    canvas.paste(shown, (x, y + layout.title_height))
    for panel, (x, y), lines in layout.panels:
        _title(draw, (x, y), lines, small, layout.cell[0])
        if panel.heatmap is not None:
            heat = _fit_heat(panel.heatmap, layout.cell)
            picture = Image.fromarray(blend(base, heat, lut, alpha), mode="RGB")
        else:
            assert panel.rgb is not None
            picture = _fit_rgb(panel.rgb, layout.cell)
        canvas.paste(picture, (x, y + layout.title_height))
    for index, (kind, y) in enumerate(layout.legends):
        x = _MARGIN if index == 0 or y != layout.legends[0][1] else _MARGIN + layout.size[0] // 2
        if kind == "relevance":
            _legend(canvas, draw, (x, y), lut, ("0", "1"), heat_legend, small)
        else:
            grey = np.linspace(0.0, 255.0, 256, dtype=np.float32)[:, None].repeat(3, axis=1)
            _legend(canvas, draw, (x, y), grey, ("−", "0", "+"), _GUIDED_LEGEND, small)
    return canvas


_GUIDED_LEGEND = "guided: input-space gradients, own scale, grey = 0"


def _title(
    draw: ImageDraw.ImageDraw,
    at: tuple[int, int],
    lines: list[str],
    face: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    width: int,
) -> None:
    x, y = at
    for line in lines:
        offset = max(0.0, (width - face.getlength(line)) / 2)
        draw.text((x + offset, y), line, font=face, fill=_INK)
        y += _LINE


def _legend(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    at: tuple[int, int],
    colours: np.ndarray,
    ticks: tuple[str, ...],
    caption: str,
    face: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    x0, y = at
    bar_w = 200
    canvas.paste(_bar(bar_w, 12, colours), (x0, y))
    for i, tick in enumerate(ticks):
        x = x0 + bar_w * i / max(len(ticks) - 1, 1) - face.getlength(tick) / 2
        x = min(max(x, x0), x0 + bar_w - face.getlength(tick))
        draw.text((x, y + 14), tick, font=face, fill=_MUTED)
    for i, line in enumerate(_wrap(caption, _LEGEND_W - bar_w - 24, face)[:2]):
        draw.text((x0 + bar_w + 12, y - 2 + i * _LINE), line, font=face, fill=_INK)


def save_grid(
    path: str | Path,
    image: Image.Image,
    rows: Sequence[tuple[str, Sequence[Panel | None]]],
    *,
    colormap: str = DEFAULT_COLORMAP,
    alpha: float = 0.5,
    title: str = "",
    heat_legend: str = "relevance, each map scaled to its own maximum",
    max_columns: int = MAX_COLUMNS,
) -> None:
    """Write a comparison grid: the input, then one row of panels per entry of ``rows``.

    Args:
        path: output file; the format follows the suffix (``.png``, ``.jpg``, ``.webp``, ``.pdf``:
            whatever PIL writes).
        image: the input picture, drawn once at the top left (each picture is 320 px on its longer
            side).
        rows: ``(row label, panels)`` pairs, e.g. one row per layer or per target class; a row of
            more than ``max_columns`` panels wraps; a ``None`` panel leaves its cell empty. Heat-map panels are drawn as overlays
            (:func:`~camscope.viz.overlay`) and share one colour bar, captioned ``heat_legend``;
            RGB panels are drawn as they are (``signed`` ones get a mid-grey-centred bar).
        colormap: matplotlib colour map name (default ``"inferno"``).
        alpha: heat-map opacity in [0, 1].
        title: optional title line(s) above the grid.

    Example:
        >>> save_grid("cat.grid.png", img, [("", [Panel("gradcam", cam)])])  # doctest: +SKIP

    Raises:
        UsageError: unknown colour map, bad alpha, empty ``rows``, a malformed panel or a file
            format PIL cannot write.
    """
    grid = compose_grid(
        image,
        rows,
        colormap=colormap,
        alpha=alpha,
        title=title,
        heat_legend=heat_legend,
        max_columns=max_columns,
    )
    target = Path(path)
    image_format = Image.registered_extensions().get(target.suffix.lower())
    if image_format is None:
        raise UsageError(f"cannot write a grid as {target.suffix!r}: use .png, .jpg, .webp or .pdf")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_picture(target, grid, image_format)


def grid_figure(
    image: Image.Image,
    rows: Sequence[tuple[str, Sequence[Panel | None]]],
    *,
    colormap: str = DEFAULT_COLORMAP,
    alpha: float = 0.5,
    title: str = "",
) -> Figure:
    """The grid of :func:`compose_grid` on a matplotlib figure (for notebooks and vector
    containers); the figure holds the composed picture at 100 dpi, one axis-free image."""
    from matplotlib.figure import Figure

    picture = compose_grid(image, rows, colormap=colormap, alpha=alpha, title=title)
    fig = Figure(figsize=(picture.width / 100, picture.height / 100), dpi=100)
    fig.figimage(np.asarray(picture), resize=False)
    return fig
