"""SDCLR on lightly's VICReg: variance, invariance and covariance terms on two projections."""

from __future__ import annotations

from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead
from torch import nn

from selfdamage.adapters.heads import lightly_head
from selfdamage.adapters.registry import register_adapter
from selfdamage.adapters.two_view import TwoViewAdapter

__all__ = ["VICRegAdapter"]


@register_adapter("vicreg")
class VICRegAdapter(TwoViewAdapter):
    """VICReg [1] with a self-damaged twin; ``forward`` returns the loss of one step::

        loss = VICRegLoss(head(dense(x0)), head_twin(twin(x1)))

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] VICReg, 2022, https://arxiv.org/abs/2105.04906

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: Default ``VICRegProjectionHead(feature_dim, 2048, 2048, num_layers=2)``, lightly's
            example's sizes (the paper: 3 layers of 8192; pass ``head=`` to match).
        loss: ``loss(z0, z1)`` on ``(N, D)``; default ``VICRegLoss()``, lightly's example's and
            the paper's weights (``lambda_param=25``, ``mu_param=25``, ``nu_param=1``). Pass
            ``VICRegLoss(...)`` for others, or ``gather_distributed=True`` under DDP.

    Examples:
        >>> import torch, torchvision
        >>> backbone = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        >>> model = VICRegAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> model.loss.lambda_param, model.loss.mu_param, model.loss.nu_param
        (25.0, 25.0, 1.0)
    """

    _two_samples_because = "VICReg's variance and covariance terms are statistics over the batch"

    default_head = lightly_head(VICRegProjectionHead, 2048, 2048, num_layers=2)

    @staticmethod
    def default_loss(head: nn.Module) -> VICRegLoss:
        """lightly's ``VICRegLoss()``."""
        return VICRegLoss()
