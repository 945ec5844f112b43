"""The projection heads: the SDCLR authors', and lightly's as a method's default head."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from selfdamage._checks import check_int

__all__ = ["SDCLRProjectionHead"]


class SDCLRProjectionHead(nn.Module):
    """The 3-layer projection head of the SDCLR reference code [0].

    ``Linear(bias) -> BN -> ReLU -> Linear -> BN -> ReLU -> Linear -> BN`` (``proj_head`` in
    ``models/resnet_prune_multibn.py``); lightly's ``SimCLRProjectionHead`` has two layers.
    Pass it as ``head=`` (to the baseline too): :doc:`/adapters`.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990, code:
      https://github.com/VITA-Group/SDCLR

    Args:
        input_dim: Features per sample from the backbone (512 for a ResNet-18).
        hidden_dim: Width of the two hidden layers (the reference code: ``input_dim``).
        output_dim: Size of the projection (the reference code's CIFAR scripts: 128).

    Attributes:
        layers: The ``nn.Sequential`` of the eight layers above, indexed 0 to 7.

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size is not positive.

    Examples:
        >>> import torch, torchvision
        >>> from torch import nn
        >>> from selfdamage.adapters import SimCLRAdapter
        >>> resnet = torchvision.models.resnet18()
        >>> backbone = nn.Sequential(*list(resnet.children())[:-1])  # (N, 512, 1, 1)
        >>> head = SDCLRProjectionHead(input_dim=512, hidden_dim=512, output_dim=128)
        >>> model = SimCLRAdapter(backbone, feature_dim=512, prune_ratio=0.9, head=head)
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 128])
    """

    def __init__(self, input_dim: int = 512, hidden_dim: int = 512, output_dim: int = 128) -> None:
        super().__init__()
        sizes = {"input_dim": input_dim, "hidden_dim": hidden_dim, "output_dim": output_dim}
        for name, size in sizes.items():
            check_int(name, size, 1, what="a positive integer")
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim, bias=True),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim, bias=False),
            nn.BatchNorm1d(output_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        """The projection of features ``x`` of shape ``(N, input_dim)``: ``(N, output_dim)``."""
        out: Tensor = self.layers(x)
        return out


def lightly_head(
    head: Callable[..., nn.Module], hidden: int | None, output: int, **options: Any
) -> Any:
    """A method's ``default_head``, declared in one line at class level.

    ``head(feature_dim, hidden, output, **options)``, ``hidden=None`` for ``feature_dim``.

    Examples:
        >>> from lightly.models.modules import MoCoProjectionHead
        >>> class Method:
        ...     default_head = lightly_head(MoCoProjectionHead, None, 128)
        >>> Method.default_head.__doc__
        "lightly's ``MoCoProjectionHead(feature_dim, feature_dim, 128)``."
        >>> Method.default_head(16).layers[0].in_features
        16
    """
    arguments = ", ".join(
        ["feature_dim", "feature_dim" if hidden is None else str(hidden), str(output)]
        + [f"{name}={value!r}" for name, value in options.items()]
    )

    def default_head(feature_dim: int) -> nn.Module:
        width = feature_dim if hidden is None else hidden
        return head(feature_dim, width, output, **options)

    default_head.__doc__ = f"lightly's ``{getattr(head, '__name__', head)}({arguments})``."
    return staticmethod(default_head)
