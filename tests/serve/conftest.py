"""Fixtures of the viewer tests: the offline default model (loaded once) and demo uploads."""

from __future__ import annotations

import io

import pytest
from PIL import Image


@pytest.fixture(scope="session")
def lite0():
    """The offline EfficientNet-Lite0 and its spec, loaded once for every viewer test."""
    from camscope import load_model

    return load_model()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def demo_pngs() -> dict[str, bytes]:
    """The four demo photos as PNG uploads."""
    from camscope.data.inputs import demo_images

    return {name: png(image) for name, image in demo_images()}
