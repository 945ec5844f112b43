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
    """VICReg [1] with a self-damaged twin; ``forward`` returns the loss.

    VICReg makes two online passes per step and pulls their projections together
    (invariance) while keeping each one's features spread (variance) and decorrelated
    (covariance). Of the two passes, one goes through the dense model and one through the
    pruned twin::

        loss = VICRegLoss(head(dense(x0)), head_twin(twin(x1)))

    The loss is symmetric in its arguments (the variance and covariance terms are summed
    over both projections), so this is lightly's step with the twin in place of the
    second pass, and ``baseline=True`` is lightly's ``examples/pytorch/vicreg.py`` with
    the same head and loss. SDCLR [0] defines only the SimCLR variant; damaging one of
    VICReg's two passes is this library's choice (the rule of
    :class:`~selfdamage.adapters.TwoViewAdapter`). The twin's projections get their own
    variance and covariance terms, so the twin is also kept from collapsing. The loss
    needs at least 2 samples per view, in eval mode too.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] VICReg, 2022, https://arxiv.org/abs/2105.04906

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: The projection head. Defaults to lightly's
            ``VICRegProjectionHead(feature_dim, 2048, 2048, num_layers=2)``, the sizes of
            lightly's ``examples/pytorch/vicreg.py`` (Linear, BatchNorm, ReLU, Linear). The
            paper uses three layers of 8192 on ImageNet; pass
            ``head=VICRegProjectionHead(feature_dim, 8192, 8192)`` to match it.
        loss: The loss, called as ``loss(z0, z1)`` on ``(N, D)`` projections. Defaults to
            lightly's ``VICRegLoss()`` as in lightly's example: the paper's weights
            (invariance ``lambda_param=25``, variance ``mu_param=25``, covariance
            ``nu_param=1``). For other weights, or ``gather_distributed=True`` under DDP,
            pass ``loss=VICRegLoss(...)``.

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
    def default_loss(head: nn.Module) -> nn.Module:
        """lightly's ``VICRegLoss()``."""
        module: nn.Module = VICRegLoss()
        return module
