"""camscope.io.preprocess: model inputs (channels, 16-bit precision), map resizing, .npy files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camscope.errors import UsageError
from camscope.io import (
    load_image,
    model_channels,
    preprocess,
    resize_map,
    save_npy,
    source_pixels,
)
from camscope.models import ModelSpec

# ---------------------------------------------------------------------------- preprocess


def test_preprocess_constant_image_by_hand() -> None:
    spec = ModelSpec(
        name="t",
        input_size=(2, 4),
        mean=(0.5, 0.25, 0.0),
        std=(0.5, 0.25, 2.0),
        interpolation="bicubic",
    )
    image = Image.new("RGB", (7, 5), (51, 102, 255))
    x = preprocess(image, spec)
    assert x.dtype == torch.float32
    assert tuple(x.shape) == (1, 3, 2, 4)  # (H, W) = input_size, whole image, no crop
    # (51/255 - 0.5)/0.5 = -0.6 ; (102/255 - 0.25)/0.25 = 0.6 ; (255/255 - 0)/2 = 0.5
    expected = torch.tensor([-0.6, 0.6, 0.5]).view(1, 3, 1, 1).expand(1, 3, 2, 4)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)


def test_preprocess_keeps_layout() -> None:
    spec = ModelSpec(name="t", input_size=(1, 2), mean=(0, 0, 0), std=(1, 1, 1))
    image = Image.new("RGB", (2, 1))
    image.putpixel((0, 0), (255, 0, 0))
    image.putpixel((1, 0), (0, 0, 255))
    x = preprocess(image, spec)
    torch.testing.assert_close(
        x[0], torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]]), rtol=0, atol=0
    )


def test_preprocess_converts_grey() -> None:
    spec = ModelSpec(name="t", input_size=(3, 3), mean=(0, 0, 0), std=(1, 1, 1))
    x = preprocess(Image.new("L", (3, 3), 255), spec)
    assert torch.equal(x, torch.ones(1, 3, 3, 3))


def test_model_channels_from_spec() -> None:
    assert model_channels(ModelSpec("rgb")) == 3
    assert model_channels(ModelSpec("grey", mean=(0.5,), std=(0.25,))) == 1
    assert model_channels(ModelSpec("grey", channels=1, mean=(0.5,), std=(0.25,))) == 1


def test_preprocess_follows_a_one_channel_spec() -> None:
    spec = ModelSpec("g", input_size=(1, 2), mean=(0.5,), std=(0.25,), interpolation="nearest")
    image = Image.new("RGB", (2, 1))
    image.putpixel((0, 0), (255, 0, 0))
    image.putpixel((1, 0), (0, 0, 255))
    x = preprocess(image, spec)
    assert tuple(x.shape) == (1, 1, 1, 2)
    # luma of pure red is 0.299, of pure blue 0.114 (BT.601); (v - 0.5) / 0.25
    expected = torch.tensor([[[[(0.299 - 0.5) / 0.25, (0.114 - 0.5) / 0.25]]]])
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)


def test_16bit_grey_reaches_grey_and_rgb_models_at_full_precision(tmp_path: Path) -> None:
    values = np.array([[0, 1, 32768, 65534]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    image = load_image(path)
    assert image.mode == "RGB"  # the picture stays 8-bit RGB for drawing
    exact = torch.from_numpy(values.astype(np.float64) / 65535.0).float()
    grey = ModelSpec("g", input_size=(1, 4), mean=(0.0,), std=(1.0,), interpolation="nearest")
    x = preprocess(image, grey)
    assert tuple(x.shape) == (1, 1, 1, 4)
    # 8 bits would give 0, 0, 128/255, 1: the 1 and the 65534 tell the difference
    torch.testing.assert_close(x[0, 0], exact, rtol=0, atol=1e-7)
    rgb = ModelSpec("c", input_size=(1, 4), mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    x3 = preprocess(image, rgb)
    for channel in range(3):
        torch.testing.assert_close(x3[0, channel], exact, rtol=0, atol=1e-7)
    # A derived picture carries nothing stale: it is read as the 8-bit picture it is.
    resized = image.resize((4, 1))
    assert source_pixels(resized) is None and source_pixels(image) is not None
    torch.testing.assert_close(
        preprocess(resized, grey)[0, 0, 0, 1], torch.tensor(0.0), rtol=0, atol=1e-7
    )


def test_preprocess_refuses_specs_it_cannot_serve() -> None:
    image = Image.new("RGB", (4, 4))
    with pytest.raises(UsageError, match="3 values for a 1-channel model"):
        preprocess(image, ModelSpec("m", channels=1))
    with pytest.raises(UsageError, match="4 channels"):
        preprocess(image, ModelSpec("m", mean=(0.5,) * 4, std=(0.5,) * 4))


def test_spec_for_a_one_channel_model() -> None:
    from torch import nn

    from camscope.models.spec import input_channels, spec_for_model

    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)
    )
    assert input_channels(model) == 1
    spec = spec_for_model(model, "grey")
    assert spec.channels == 1 and model_channels(spec) == 1
    # ImageNet's three values become their average (documented deviation)
    assert spec.mean == pytest.approx((0.449,)) and spec.std == pytest.approx((0.226,))
    assert preprocess(Image.new("L", (5, 5), 100), spec).shape == (1, 1, 224, 224)


# ---------------------------------------------------------------------------- resize_map, save


def test_resize_map_bilinear_by_hand() -> None:
    heat = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    out = resize_map(heat, (3, 4))
    assert out.dtype == np.float32
    assert out.shape == (3, 4)  # (height, width)
    # half-pixel centres: sample x = -0.25, 0.25, 0.75, 1.25 -> clamped 0, 0.25, 0.75, 1
    np.testing.assert_allclose(out, np.tile([0.0, 0.25, 0.75, 1.0], (3, 1)), atol=1e-6)


def test_resize_map_clamps_and_accepts_batch_dim() -> None:
    heat = torch.tensor([[[1.5, -0.5]]])
    out = resize_map(heat, (1, 2))
    np.testing.assert_array_equal(out, [[1.0, 0.0]])


def test_save_npy(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "m.npy"
    save_npy(target, np.array([[1, 2]], dtype=np.int64))
    back = np.load(target)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, [[1.0, 2.0]])
