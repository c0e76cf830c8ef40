"""Colour maps, heat-map overlays and guided-gradient pictures, in uint8 and float32.

A colour map becomes a lookup table of its ``N`` colours (``cmap(arange(N))``), indexed the way
matplotlib indexes it (``min(int(v * N), N - 1)``), so the colours are exactly matplotlib's while
a pixel costs one index byte instead of four float64 channels. Overlays are blended in row blocks
of at most :data:`BLOCK_PIXELS` pixels: beyond the picture, its map (float32) and the result,
an overlay needs a fixed few megabytes whatever the size.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import UsageError, closest

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

DEFAULT_COLORMAP = "inferno"
#: Colour maps suggested in messages and ``--help``; any matplotlib colour map name works.
RECOMMENDED_COLORMAPS = ("inferno", "magma", "viridis", "plasma", "cividis", "turbo", "jet")
BLOCK_PIXELS = 1 << 16  # pixels blended at a time (about 2 MB of temporaries)
#: Colours of the series of a chart (methods, classes): Okabe & Ito's eight (told apart by
#: colour-blind eyes too), then grey and Paul Tol's; the ``i``-th series takes ``chart_colour(i)``.
CHART_COLOURS = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
    "#999999", "#882255", "#44AA99", "#117733", "#332288", "#AA4499", "#DDCC77", "#88CCEE",
)  # fmt: skip


def chart_colour(index: int) -> str:
    return CHART_COLOURS[index % len(CHART_COLOURS)]


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
    colormap_lut(name)
    return name


@lru_cache(maxsize=32)
def colormap_lut(name: str) -> np.ndarray:
    """The colour map's ``(N, 3)`` float32 colours in [0, 255] (read-only, cached)."""
    cmap = get_colormap(name)
    lut = np.asarray(cmap(np.arange(cmap.N)), dtype=np.float64)[:, :3] * 255.0
    table = lut.astype(np.float32)
    table.flags.writeable = False
    return table


def check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise UsageError(f"alpha must be between 0 and 1 (heat-map opacity); got {alpha}")
    return float(alpha)


def clean_map(heatmap: np.ndarray) -> np.ndarray:
    """A heat map as a 2-D float32 array (no copy when it already is one); values are clipped to
    [0, 1] and NaN counts as 0 where they are used (:func:`blend`, :func:`colorize`)."""
    heat = np.asarray(heatmap)
    if heat.ndim != 2:
        raise UsageError(
            f"a heat map must be a 2-D (H, W) array; got shape {heat.shape}. "
            "Pick one image (and one target) of the batch first."
        )
    return heat.astype(np.float32, copy=False)


def _indices(heat: np.ndarray, n: int) -> np.ndarray:
    """matplotlib's colour index of each value, clipped to [0, 1] first (NaN -> 0, +inf -> 1):
    ``min(int(v * N), N - 1)``."""
    scaled = heat * np.float32(n)
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=n - 1, neginf=0.0)
    np.clip(scaled, 0.0, np.float32(n - 1), out=scaled)
    return scaled.astype(np.uint8 if n <= 256 else np.uint16)


def colorize(heatmap: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Map a heat map in [0, 1] to colours: ``(H, W, 3)`` float32 in [0, 1].

    Values outside [0, 1] are clipped and NaN counts as 0; the colours are matplotlib's.
    """
    lut = colormap_lut(colormap)
    return lut[_indices(clean_map(heatmap), len(lut))] / np.float32(255.0)


def to_display_rgb(image: Image.Image, max_side: int | None = None) -> Image.Image:
    """The picture drawn under every overlay and in a grid's input panel: RGB, any transparency
    composited on white (as :func:`camscope.io.load_image` does), shrunk so that its longer side
    is at most ``max_side`` pixels (None or 0: full size)."""
    if not isinstance(image, Image.Image):
        raise UsageError(f"expected a PIL image, got {type(image).__name__}")
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    if image.mode == "RGB":
        return image
    if "A" in image.mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255,) * 4), rgba).convert("RGB")
    return image.convert("RGB")


def overlay(
    image: Image.Image, heatmap: np.ndarray, colormap: str = DEFAULT_COLORMAP, alpha: float = 0.5
) -> Image.Image:
    """Blend a coloured heat map over an image.

    Each pixel becomes ``(1 - alpha) * image + alpha * 255 * colormap(heatmap)``, rounded to the
    nearest integer: ``alpha=0`` gives the image back, ``alpha=1`` the coloured map alone.
    Computed in float32 over row blocks straight into the new picture: beyond the picture, its map
    and the result, a fixed ~2 MB whatever the size.

    Args:
        image: the picture (transparency composited on white, see :func:`to_display_rgb`).
        heatmap: ``(H, W)`` map in [0, 1] at the picture's resolution (``H = image.height``);
            resize maps with :func:`camscope.io.resize_map` first.
        colormap: matplotlib colour map name.
        alpha: opacity of the heat map, in [0, 1].

    Returns:
        A new RGB image of the same size.

    Raises:
        UsageError: unknown colour map, alpha outside [0, 1], or a map of another size.
    """
    alpha = check_alpha(alpha)
    lut = colormap_lut(colormap)
    picture = to_display_rgb(image)
    heat = clean_map(heatmap)
    if heat.shape != (picture.height, picture.width):
        raise UsageError(
            f"heat map shape {heat.shape} does not match the image ({picture.height}, "
            f"{picture.width}) (height, width); resize it with camscope.io.resize_map first"
        )
    out = Image.new("RGB", picture.size)
    step = max(1, BLOCK_PIXELS // max(picture.width, 1))
    for top in range(0, picture.height, step):
        box = (0, top, picture.width, min(top + step, picture.height))
        base = np.asarray(picture.crop(box))
        out.paste(Image.fromarray(blend(base, heat[top : box[3]], lut, alpha), mode="RGB"), box)
    return out


def blend(base: np.ndarray, heat: np.ndarray, lut: np.ndarray, alpha: float) -> np.ndarray:
    """``rint((1 - alpha) * base + alpha * lut[index(heat)])`` as uint8, in row blocks."""
    height, width = heat.shape
    out = np.empty((height, width, 3), dtype=np.uint8)
    keep, paint = np.float32(1.0 - alpha), lut * np.float32(alpha)
    step = max(1, BLOCK_PIXELS // max(width, 1))
    for top in range(0, height, step):
        rows = slice(top, top + step)
        mixed = base[rows].astype(np.float32)
        mixed *= keep
        mixed += paint[_indices(heat[rows], len(lut))]
        np.rint(mixed, out=mixed)
        out[rows] = mixed
    return out


def guided_spread(gradients: np.ndarray) -> float:
    """The spread ``s`` :func:`guided_to_rgb` divides by: the 99th percentile of
    ``|g - mean(g)|``, or its maximum when that percentile is 0."""
    grad = np.asarray(gradients, dtype=np.float32)
    grad = np.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    centred = np.abs(grad - grad.mean(dtype=np.float64).astype(np.float32))
    spread = float(np.percentile(centred, 99.0)) if centred.size else 0.0
    return spread if spread > 1e-12 else float(centred.max(initial=0.0))


def guided_to_rgb(gradients: np.ndarray, spread: float | None = None) -> np.ndarray:
    """Render signed input gradients ``(3, H, W)`` as an ``(H, W, 3)`` uint8 picture.

    The usual display of guided backpropagation (Springenberg et al., 2015): the gradients are
    centred on their mean, divided by a robust spread ``s`` and mapped around mid-grey,

    .. math::
        \\text{rgb} = \\mathrm{clip}\\Big(\\tfrac{1}{2} + \\tfrac{g - \\bar g}{2 s}, 0, 1\\Big)\\cdot 255

    where ``s`` is the 99th percentile of ``|g - mean|`` (:func:`guided_spread`; pass ``spread``
    to share one scale between pictures), so the strongest 1 % of values saturate instead of a
    single outlier washing everything else out to grey. Mid-grey (128) means "no gradient";
    brighter and darker colours are positive and negative evidence per channel. An all-zero (or
    constant) input gives a uniform mid-grey image.

    Deviation: the common recipe divides by the standard deviation and scales by 0.1; the percentile
    gives similar pictures and is less sensitive to a few huge values.
    """
    grad = np.asarray(gradients, dtype=np.float32)
    if grad.ndim != 3 or grad.shape[0] != 3:
        raise UsageError(
            f"guided gradients must have shape (3, H, W); got {grad.shape}. "
            "Pick one image (and one target) of the batch first."
        )
    grad = np.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    scale = guided_spread(grad) if spread is None else float(spread)
    centred = grad - grad.mean(dtype=np.float64).astype(np.float32)
    if scale > 1e-12:
        scaled = np.float32(0.5) + centred * np.float32(1.0 / (2.0 * scale))
    else:
        scaled = np.full_like(centred, 0.5)
    rgb = np.clip(scaled, 0.0, 1.0).transpose(1, 2, 0) * np.float32(255.0)
    return np.rint(rgb).astype(np.uint8)
