"""Shared fixtures. Tests run single-threaded: the machine's few cores are shared."""

from __future__ import annotations

import pytest
import torch
from torch import nn

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def resnet18() -> nn.Module:
    """A random-init torchvision ResNet-18 with 10 classes, in eval mode (no weights download)."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


@pytest.fixture(scope="session")
def image_pair() -> torch.Tensor:
    """Two 64 x 64 RGB inputs."""
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
