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
    """Barlow Twins [1] with a self-damaged twin; ``forward`` returns the loss.

    Barlow Twins makes two online passes per step and drives the cross-correlation matrix
    of their batch-normalized projections towards the identity. Of the two passes, one
    goes through the dense model and one through the pruned twin::

        loss = BarlowTwinsLoss(head(dense(x0)), head_twin(twin(x1)))

    The loss is symmetric in its arguments (swapping them transposes the matrix), so this
    is lightly's step with the twin in place of the second pass, and ``baseline=True`` is
    lightly's ``examples/pytorch/barlowtwins.py`` with the same head and loss. SDCLR [0]
    defines only the SimCLR variant; damaging one of Barlow Twins' two passes is this
    library's choice (the rule of :class:`~selfdamage.adapters.TwoViewAdapter`). The loss
    normalizes each feature over the batch, so a step needs at least 2 samples per view,
    in eval mode too.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] Barlow Twins, 2021, https://arxiv.org/abs/2103.03230

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: The projection head. Defaults to lightly's
            ``BarlowTwinsProjectionHead(feature_dim, 2048, 2048)``, the sizes of lightly's
            ``examples/pytorch/barlowtwins.py`` (three Linear layers, BatchNorm and ReLU
            after the first two). The paper uses 8192 for both on ImageNet; pass
            ``head=BarlowTwinsProjectionHead(feature_dim, 8192, 8192)`` to match it.
        loss: The loss, called as ``loss(z0, z1)`` on ``(N, D)`` projections. Defaults to
            lightly's ``BarlowTwinsLoss()`` as in lightly's example: ``lambda_param=5e-3``
            (the paper's weight of the redundancy term, chosen for its 8192-d projector).
            For another weight, or ``gather_distributed=True`` under DDP, pass
            ``loss=BarlowTwinsLoss(lambda_param=..., gather_distributed=...)``.

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
    def default_loss(head: nn.Module) -> nn.Module:
        """lightly's ``BarlowTwinsLoss()``."""
        module: nn.Module = BarlowTwinsLoss()
        return module
