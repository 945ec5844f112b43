"""Wrap backbones you already have: a torchvision ResNet and a timm-style network.

Nothing is downloaded: the models are built with random weights. The dense forward through
the wrapper is exactly the bare model's, and the twin is a pruned view of the same weights.

Run:
    python examples/wrap_backbones.py
    python examples/wrap_backbones.py --fast
"""

from __future__ import annotations

import argparse

# --- quickstart start
import torch
import torchvision
from torch import Tensor, nn

from selfdamage import SelfDamagingWrapper

torch.manual_seed(0)
backbone = torchvision.models.resnet18(num_classes=128)  # any nn.Module, unchanged
wrapper = SelfDamagingWrapper(backbone, prune_ratio=0.9)
x = torch.randn(8, 3, 64, 64)
z_dense = wrapper(x)  # exactly backbone(x)
z_twin = wrapper.damaged(x)  # the pruned twin: shared weights, its own BatchNorm
# --- quickstart end


class TimmStyleNet(nn.Module):
    """A timm-style backbone: ``forward_features``, ``forward_head``, ``num_features``.

    Stands in for ``timm.create_model(..., num_classes=0)``; with timm installed, wrap
    that model the same way.
    """

    def __init__(self, num_features: int = 64) -> None:
        super().__init__()
        self.num_features = num_features
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 4, stride=4), nn.BatchNorm2d(32))
        self.stages = nn.Sequential(
            nn.Conv2d(32, 32, 7, padding=3, groups=32),  # depthwise, ConvNeXt-like
            nn.GroupNorm(1, 32),
            nn.Conv2d(32, num_features, 1),
            nn.GELU(),
        )
        self.head = nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x.mean((2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def describe(name: str, model: nn.Module, wrapper: SelfDamagingWrapper, x: Tensor) -> None:
    model.eval()
    with torch.no_grad():
        exact = torch.equal(wrapper(x), model(x))
        dense, twin = wrapper(x), wrapper.damaged(x)
    agreement = torch.cosine_similarity(dense, twin).mean().item()
    print(
        f"{name}: {len(list(wrapper.named_masks()))} pruned tensors, "
        f"sparsity {wrapper.sparsity:.3f}, dense == bare model: {exact}, "
        f"mean cosine(dense, twin) = {agreement:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="smaller inputs (for CI)")
    args = parser.parse_args()
    size = 32 if args.fast else 96
    x = torch.randn(4, 3, size, size)

    describe("torchvision resnet18", backbone, wrapper, x)

    timm_style = TimmStyleNet()
    # GroupNorm has no running statistics: it stays shared. The BatchNorm in the stem gets
    # a twin copy. Prune the 1x1 and depthwise convolutions, keep the stem dense.
    timm_wrapper = SelfDamagingWrapper(
        timm_style,
        prune_ratio=0.5,
        prunable=lambda name, m: name.startswith("stages.") and isinstance(m, nn.Conv2d),
    )
    describe("timm-style net", timm_style, timm_wrapper, x)


if __name__ == "__main__":
    main()
