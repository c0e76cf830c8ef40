"""GapNet: convolution blocks without pooling or stride, then global average pooling and one linear
layer, so that the class activation map has the input's own resolution.

Wang, Zhang, Zhou and Guo, "CNN visualization with Grad-CAM" (seed 004), take VGG-16, remove every
pooling layer and replace the fully connected head by global average pooling (GAP) and one linear
layer, as in the CAM paper (Zhou et al., CVPR 2016, after Lin et al.'s Network in Network). With
no pooling and no stride, the last feature map ``f`` has the input's height and width, and the CAM
of class ``c``

.. math::
    M_c(x, y) = \\sum_k w^c_k\\, f_k(x, y)

needs no upsampling. ``pooled=True`` builds the control (``gapnet-pooled``): the same blocks with
the same parameters and a 2x2 max-pool between blocks, so its map is ``2^(depth-1)`` times smaller
on each side.

Each block is ``convs_per_block`` times ``3x3 conv (padding 1) -> batch norm -> ReLU`` at constant
width. Deviations from the seed's network, said openly: the width is constant instead of VGG's
64-128-256-512 doubling (so both variants have exactly the same parameters and only the pooling
differs), batch norm is added by default (``batch_norm=False`` removes it, as in VGG-16), and the
depth is an option (VGG-16 has 13 convolutions).

Example:
    >>> import torch
    >>> net = GapNet(num_classes=4, width=8, depth=2)
    >>> net(torch.zeros(1, 3, 32, 32)).shape, net.features(torch.zeros(1, 3, 32, 32)).shape
    (torch.Size([1, 4]), torch.Size([1, 8, 32, 32]))
    >>> GapNet(4, width=8, depth=3, pooled=True).features(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 8, 8, 8])
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import UsageError


class GapNet(nn.Module):
    """Seed 004's no-pooling network: ``features`` (the CAM layer) -> GAP -> ``fc``.

    Args:
        num_classes: outputs of the linear layer.
        width: channels of every convolution.
        depth: number of blocks.
        convs_per_block: convolutions per block (VGG uses 2 or 3).
        pooled: put a 2x2 max-pool between blocks (the ``gapnet-pooled`` control).
        batch_norm: batch norm after every convolution.
        in_channels: input channels.
    """

    def __init__(
        self,
        num_classes: int,
        width: int = 32,
        depth: int = 3,
        convs_per_block: int = 2,
        pooled: bool = False,
        batch_norm: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("width", width),
            ("depth", depth),
            ("convs_per_block", convs_per_block),
        ):
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"gapnet: {name} must be a whole number >= 1, got {value!r}")
        self.num_classes = num_classes
        self.pooled = pooled
        layers: list[nn.Module] = []
        channels = in_channels
        for block in range(depth):
            if pooled and block > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(convs_per_block):
                layers.append(
                    nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm),
                )
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU())
                channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def get_classifier(self) -> nn.Linear:
        """The linear layer after global average pooling (what CAM reads)."""
        return self.fc

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))
