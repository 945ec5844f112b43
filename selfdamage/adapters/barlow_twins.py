"""SDCLR on lightly's Barlow Twins: a cross-correlation loss on the two online projections."""

from __future__ import annotations

from lightly.loss import BarlowTwinsLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import nn

from selfdamage.adapters.heads import lightly_head
from selfdamage.adapters.registry import register_adapter
from selfdamage.adapters.two_view import TwoViewAdapter

__all__ = ["BarlowTwinsAdapter"]


@register_adapter("barlowtwins")
class BarlowTwinsAdapter(TwoViewAdapter):
    """Barlow Twins [1] with a self-damaged twin; ``forward`` returns the loss of one step::

        loss = BarlowTwinsLoss(head(dense(x0)), head_twin(twin(x1)))

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] Barlow Twins, 2021, https://arxiv.org/abs/2103.03230

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: Default ``BarlowTwinsProjectionHead(feature_dim, 2048, 2048)``, lightly's
            example's sizes (the paper: 8192 and 8192 on ImageNet; pass ``head=`` to match).
        loss: ``loss(z0, z1)`` on ``(N, D)``; default ``BarlowTwinsLoss()`` as in lightly's example
            (``lambda_param=5e-3``: the paper's, for its 8192-d projector). Pass
            ``BarlowTwinsLoss(lambda_param=..., gather_distributed=...)`` to change them.

    Examples:
        >>> import torch, torchvision
        >>> backbone = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        >>> model = BarlowTwinsAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> model.loss.lambda_param
        0.005
    """

    _two_samples_because = "Barlow Twins normalizes each projection feature over the batch"

    default_head = lightly_head(BarlowTwinsProjectionHead, 2048, 2048)

    @staticmethod
    def default_loss(head: nn.Module) -> BarlowTwinsLoss:
        """lightly's ``BarlowTwinsLoss()``."""
        return BarlowTwinsLoss()
