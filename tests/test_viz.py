"""Tests of camscope.viz: overlay arithmetic, guided-gradient rendering and grids."""

from __future__ import annotations

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


def test_grid_figure_axes() -> None:
    image = Image.new("RGB", (32, 24), (30, 60, 90))
    fig = viz.grid_figure(image, _rows(), title="t")
    # 2 rows x (input + 2 panel columns) + 1 colour bar.
    assert len(fig.axes) == 2 * 3 + 1
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(visible) == 2 * 3 - 1 + 1  # the empty cell of row 2 is hidden
    titles = [ax.get_title() for ax in fig.axes]
    assert "gradcam\ncat (p=0.90)" in titles and "input" in titles
    # Only RGB panels: no colour bar.
    fig2 = viz.grid_figure(image, [("", [viz.Panel("g", rgb=np.zeros((24, 32, 3)))])])
    assert len(fig2.axes) == 2


def test_save_grid_writes_png(tmp_path) -> None:
    image = Image.new("RGB", (32, 24), (30, 60, 90))
    path = tmp_path / "sub" / "grid.png"
    viz.save_grid(path, image, _rows(), colormap="jet", alpha=0.4)
    with Image.open(path) as written:
        assert written.format == "PNG"
        width, height = written.size
    # Three columns of 2.2 in at 150 dpi plus the colour bar; two rows of 3:4 cells.
    assert 3 * 2.2 * 150 <= width <= 4.2 * 2.2 * 150
    assert height < width


def test_unknown_colormap() -> None:
    image = Image.new("RGB", (4, 4))
    with pytest.raises(UsageError, match=r"'infernoo'.*inferno"):
        viz.overlay(image, np.zeros((4, 4)), colormap="infernoo")
    with pytest.raises(UsageError, match="unknown colormap 'nope'"):
        viz.save_grid("never.png", image, _rows(), colormap="nope")
    assert viz.check_colormap("turbo") == "turbo"


def test_bad_panel() -> None:
    image = Image.new("RGB", (4, 4))
    with pytest.raises(UsageError, match="exactly one"):
        viz.grid_figure(image, [("", [viz.Panel("empty")])])
    with pytest.raises(UsageError, match="at least one row"):
        viz.grid_figure(image, [])
