"""Tests of camscope.viz: overlay arithmetic, guided-gradient rendering and grids."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from camscope import viz
from camscope.errors import UsageError


def _image() -> Image.Image:
    # 2 x 3 image (H=2, W=3) with known pixel values.
    pixels = np.array(
        [
            [[5, 50, 100], [11, 101, 201], [0, 0, 0]],
            [[255, 255, 255], [7, 9, 13], [200, 100, 50]],
        ],
        dtype=np.uint8,
    )
    return Image.fromarray(pixels, mode="RGB")


def test_overlay_alpha_zero_returns_the_image() -> None:
    image = _image()
    heat = np.array([[0.0, 1.0, 0.3], [0.7, 0.5, 0.1]])
    out = viz.overlay(image, heat, colormap="inferno", alpha=0.0)
    assert out.mode == "RGB" and out.size == image.size
    np.testing.assert_array_equal(np.asarray(out), np.asarray(image))


def test_overlay_alpha_one_gives_colormap_colours() -> None:
    image = _image()
    heat = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    gray = np.asarray(viz.overlay(image, heat, colormap="gray", alpha=1.0))
    # gray(0) is black, gray(1) is white, whatever the image underneath.
    expected = np.where(heat[..., None] > 0.5, 255, 0)
    np.testing.assert_array_equal(gray, np.broadcast_to(expected, (2, 3, 3)))
    # inferno's published end colours: (0.001462, 0.000466, 0.013866) and (0.988362, 0.998364,
    # 0.644924), times 255 and rounded.
    hot = np.asarray(viz.overlay(image, heat, colormap="inferno", alpha=1.0))
    np.testing.assert_array_equal(hot[0, 0], [0, 0, 4])
    np.testing.assert_array_equal(hot[0, 1], [252, 255, 164])


def test_overlay_half_alpha_is_the_average() -> None:
    image = _image()
    heat = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    out = np.asarray(viz.overlay(image, heat, colormap="gray", alpha=0.5))
    # (5, 50, 100) over black: halves; (11, 101, 201) over white: (v + 255) / 2.
    np.testing.assert_array_equal(out[0, 0], [2, 25, 50])  # 2.5 rounds half to even
    np.testing.assert_array_equal(out[0, 1], [133, 178, 228])


def test_overlay_rejects_bad_input() -> None:
    image = _image()
    with pytest.raises(UsageError, match="resize_map"):
        viz.overlay(image, np.zeros((3, 2)))
    with pytest.raises(UsageError, match="alpha"):
        viz.overlay(image, np.zeros((2, 3)), alpha=1.5)
    with pytest.raises(UsageError, match="2-D"):
        viz.overlay(image, np.zeros((1, 2, 3)))


def test_guided_to_rgb_zero_is_mid_grey() -> None:
    out = viz.guided_to_rgb(np.zeros((3, 4, 5), dtype=np.float32))
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert (out == 128).all()


def test_guided_to_rgb_signs() -> None:
    grad = np.zeros((3, 10, 10))
    grad[0, 1, 1] = 2.0
    grad[2, 5, 5] = -2.0
    out = viz.guided_to_rgb(grad)
    # Mean 0; the 99th percentile of |g| is 0 here, so the spread falls back to the maximum (2):
    # +2 -> 0.5 + 2 / 4 = 1 -> 255, -2 -> 0, everything else mid-grey.
    assert out[1, 1, 0] == 255
    assert out[5, 5, 2] == 0
    assert out[0, 0].tolist() == [128, 128, 128]
    assert out[1, 1, 1] == 128


def test_guided_to_rgb_rejects_wrong_shape() -> None:
    with pytest.raises(UsageError, match=r"\(3, H, W\)"):
        viz.guided_to_rgb(np.zeros((4, 4, 3)))


def _rows() -> list[tuple[str, list[viz.Panel]]]:
    heat = np.linspace(0, 1, 24 * 32).reshape(24, 32)
    rgb = np.full((24, 32, 3), 128, dtype=np.uint8)
    return [
        ("layer a", [viz.Panel("gradcam\ncat (p=0.90)", heatmap=heat), viz.Panel("g", rgb=rgb)]),
        ("layer b", [viz.Panel("gradcam++", heatmap=heat[:12, :16])]),
    ]


def test_overlay_costs_a_few_bytes_per_pixel() -> None:
    # 3 MP: float64 overlays (the old way) peaked at about 140 bytes per pixel.
    height, width = 1500, 2000
    image = Image.fromarray(np.full((height, width, 3), 90, dtype=np.uint8))
    heat = np.linspace(0, 1, height * width, dtype=np.float32).reshape(height, width)
    tracemalloc.start()
    try:
        picture = viz.overlay(image, heat)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert picture.size == (width, height)
    assert peak / (height * width) < 8  # numpy's share: picture copy, result, row blocks


def test_overlay_composites_transparency_like_the_input_panel() -> None:
    rgba = Image.new("RGBA", (2, 1), (10, 20, 30, 0))  # fully transparent, hidden colour
    rgba.putpixel((1, 0), (200, 0, 0, 255))
    shown = np.asarray(viz.to_display_rgb(rgba))
    np.testing.assert_array_equal(shown, [[[255, 255, 255], [200, 0, 0]]])
    np.testing.assert_array_equal(np.asarray(viz.overlay(rgba, np.zeros((1, 2)), alpha=0.0)), shown)
    grid = viz.compose_grid(rgba, [("", [viz.Panel("m", heatmap=np.zeros((1, 2)))])], alpha=0.0)
    layout = viz.grid_layout(rgba.size, [("", [viz.Panel("m", heatmap=np.zeros((1, 2)))])])
    (x, y), top = layout.input_at, layout.title_height
    cell_w, cell_h = layout.cell
    pixels = np.asarray(grid)
    input_cell = pixels[y + top : y + top + cell_h, x : x + cell_w]
    panel_x = layout.panels[0][1][0]
    panel_cell = pixels[y + top : y + top + cell_h, panel_x : panel_x + cell_w]
    np.testing.assert_array_equal(input_cell, panel_cell)  # alpha 0: the same picture
    assert (input_cell[:, : cell_w // 4] == 255).all()  # the transparent half is white


def test_grid_layout_draws_the_input_once_and_wraps() -> None:
    heat = np.zeros((4, 4))
    many = [viz.Panel(f"m{i}", heatmap=heat) for i in range(8)]
    rows = [("top-1: cat", many), ("top-2: dog", many[:3])]
    layout = viz.grid_layout((40, 30), rows, max_columns=6)
    assert len(layout.panels) == 11
    assert layout.input_at == (12, layout.labels[0][0] + 24)  # once, under the first label
    tops = sorted({y for _, (_, y), _ in layout.panels})
    assert len(tops) == 3  # 8 panels wrap into 6 + 2, then the second row's 3
    columns = sorted({x for _, (x, _), _ in layout.panels})
    assert len(columns) == 6 and columns[0] > layout.input_at[0]
    assert [text for _, text in layout.labels] == ["top-1: cat", "top-2: dog"]
    assert [kind for kind, _ in layout.legends] == ["relevance"]


def test_guided_panels_get_their_own_legend() -> None:
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    heat = np.zeros((4, 4))
    both = [("", [viz.Panel("gradcam", heatmap=heat), viz.Panel("guided", rgb=rgb, signed=True)])]
    assert [k for k, _ in viz.grid_layout((4, 4), both).legends] == ["relevance", "guided"]
    only = [("", [viz.Panel("guided", rgb=rgb, signed=True)])]
    assert [k for k, _ in viz.grid_layout((4, 4), only).legends] == ["guided"]
    plain = [("", [viz.Panel("photo", rgb=rgb)])]
    assert viz.grid_layout((4, 4), plain).legends == []


def test_titles_are_plain_text() -> None:
    # matplotlib parsed "$...$" as math: "$x_$" aborted the whole grid.
    image = Image.new("RGB", (32, 24), (30, 60, 90))
    rows = [("target: $x_$ (p = 0.5)", [viz.Panel("a $\\frac{1}{$ b", heatmap=np.zeros((24, 32)))])]
    grid = viz.compose_grid(image, rows, title="$model$ | a\x1b[31mb")
    assert grid.width > 320
    layout = viz.grid_layout(image.size, rows, title="a\x1b[31mb\nc")
    assert layout.header == ["a\\x1b[31mb", "c"]  # escape codes shown, not sent to a viewer
    assert viz.printable("tab\there\n") == "tab\\there\n"


def test_save_grid_writes_png(tmp_path) -> None:
    image = Image.new("RGB", (32, 24), (30, 60, 90))
    path = tmp_path / "sub" / "grid.png"
    viz.save_grid(path, image, _rows(), colormap="jet", alpha=0.4)
    with Image.open(path) as written:
        assert written.format == "PNG"
        width, height = written.size
    # Input + two panel columns of 320 px (cells are 320 px on the longer side).
    assert 3 * 320 <= width <= 3 * 320 + 60
    assert height > 2 * 240
    with pytest.raises(UsageError, match="cannot write a grid"):
        viz.save_grid(tmp_path / "grid.svg", image, _rows())
    fig = viz.grid_figure(image, _rows())
    assert fig.get_figwidth() * 100 == pytest.approx(width)


def test_unknown_colormap() -> None:
    image = Image.new("RGB", (4, 4))
    with pytest.raises(UsageError, match=r"'infernoo'.*inferno"):
        viz.overlay(image, np.zeros((4, 4)), colormap="infernoo")
    with pytest.raises(UsageError, match="unknown colormap 'nope'"):
        viz.save_grid("never.png", image, _rows(), colormap="nope")
    assert viz.check_colormap("turbo") == "turbo"


def test_colorize_is_matplotlibs_colour_map() -> None:
    import matplotlib

    heat = np.array([[0.0, 0.2, 0.5], [0.999, 1.0, 0.0031]])
    expected = matplotlib.colormaps["viridis"](heat)[..., :3]
    np.testing.assert_allclose(viz.colorize(heat, "viridis"), expected, atol=1e-6)


def test_bad_panel() -> None:
    image = Image.new("RGB", (4, 4))
    with pytest.raises(UsageError, match="exactly one"):
        viz.compose_grid(image, [("", [viz.Panel("empty")])])
    with pytest.raises(UsageError, match="at least one row"):
        viz.compose_grid(image, [])


def test_boxes_in_one_colour_and_width() -> None:
    """The reports' ground-truth boxes: every box in the given colour and width, the inside and
    the outside untouched (one drawer for detections and reports)."""
    from PIL import Image

    from camscope.viz.boxes import GREEN, Box, draw_boxes

    black = Image.new("RGB", (20, 20))
    drawn = np.asarray(draw_boxes(black, [Box((4, 4, 15, 15))], colour=GREEN, width=2))
    assert tuple(drawn[4, 10]) == GREEN and tuple(drawn[5, 10]) == GREEN  # two pixels wide
    assert tuple(drawn[6, 10]) == (0, 0, 0) and tuple(drawn[3, 10]) == (0, 0, 0)
    assert tuple(drawn[15, 10]) == GREEN and tuple(drawn[16, 10]) == (0, 0, 0)
    assert np.asarray(black).max() == 0  # a copy: the caller's picture is left as it was
