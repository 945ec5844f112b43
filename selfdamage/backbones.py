"""Backbones for small images, as used by SDCLR's CIFAR experiments.

The paper trains a ResNet-18 with a 3x3 stem and no max-pool on 32x32 images. torchvision's
ResNet fixes the width at 64; :func:`cifar_resnet18` builds the same architecture with a
width of your choice, so the long-tail study can run on a CPU. It is initialised as
torchvision's ResNet and the SDCLR code's: He-normal convolutions in ``fan_out`` mode,
BatchNorm at weight 1 and bias 0. The initialisation matters to the twin: under PyTorch's
default (uniform within ``1/sqrt(fan_in)``), the widest convolutions hold only small weights,
and the first global threshold at ``prune_ratio=0.9`` removes all of ``layer4``'s 3x3
convolutions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from selfdamage._checks import check_int

__all__ = ["CifarResNet", "cifar_resnet18"]


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.downsample(x))


class CifarResNet(nn.Module):
    """The network :func:`cifar_resnet18` builds; ``feature_dim`` is its output size.

    Examples:
        >>> cifar_resnet18(width=8).feature_dim
        64
    """

    feature_dim: int

    def __init__(self, width: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        layers: list[nn.Module] = []
        in_planes = width
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**i
            layers.append(
                nn.Sequential(
                    _BasicBlock(in_planes, planes, stride), _BasicBlock(planes, planes, 1)
                )
            )
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_planes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def cifar_resnet18(*, width: int = 64, in_channels: int = 3) -> CifarResNet:
    """ResNet-18 for small images: 3x3 stem, no max-pool, no classifier; SDCLR's initialisation.

    Returns pooled features of dimension ``8 * width`` (512 at the paper's width 64),
    available as the module's ``feature_dim`` attribute.

    Args:
        width: Channels of the first stage; later stages double it. 64 in the paper.
        in_channels: Channels of the input images, 1 for grayscale.

    Raises:
        TypeError: If ``width`` or ``in_channels`` is not an integer.
        ValueError: If ``width`` or ``in_channels`` is not positive.

    Examples:
        >>> import torch
        >>> backbone = cifar_resnet18(width=16)
        >>> backbone(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 128])
        >>> backbone.feature_dim
        128
    """
    width = check_int("width", width, 1, what="a positive integer")
    in_channels = check_int("in_channels", in_channels, 1, what="a positive integer")
    return CifarResNet(width, in_channels)
