"""SDCLR on lightly's TiCo: a momentum target network and a running covariance."""

from __future__ import annotations

from lightly.loss import TiCoLoss
from lightly.models.modules.heads import TiCoProjectionHead
from torch import Tensor, nn

from selfdamage._checks import check_real
from selfdamage.adapters._head_sizes import head_output_dim
from selfdamage.adapters.base import MomentumAdapter
from selfdamage.adapters.heads import lightly_head
from selfdamage.adapters.registry import register_adapter

__all__ = ["TiCoAdapter"]


@register_adapter("tico")
class TiCoAdapter(MomentumAdapter):
    """Symmetric TiCo [1] with a self-damaged twin; ``forward`` returns the loss of one step::

        z0, z1 = head(dense(x0)), head_twin(twin(x1))
        k0, k1 = momentum_encoder(x0), momentum_encoder(x1)  # dense, without gradient
        loss = (L(z1, k0, update_covariance_matrix=False) + L(z0, k1)) / 2

    ``L`` is lightly's ``TiCoLoss`` (symmetric form: :doc:`/methods`). Its running covariance
    ``C`` (``loss.C``) is updated once per step from the dense half; the twin half only reads it.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] TiCo, 2022, https://arxiv.org/abs/2206.10698

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: Default ``TiCoProjectionHead(feature_dim, 4096, 256)``, the paper's sizes
            (lightly's example: hidden 1024; pass ``head=`` to match).
        loss: A ``TiCoLoss`` (or a subclass); default ``TiCoLoss(beta, rho)``. Under DDP pass
            ``TiCoLoss(gather_distributed=True)``, or ``C`` follows rank 0's projections only.
        beta: EMA coefficient of ``C``; default 0.9 (paper, lightly). Only without ``loss``.
        rho: Weight of the covariance term; default 8.0 (paper, lightly). Only without ``loss``.

    Raises:
        TypeError: Also if ``loss`` is not a ``TiCoLoss``.
        ValueError: Also if ``beta`` or ``rho`` is given with ``loss``, ``beta`` is not in
            ``[0, 1]``, ``rho`` is negative, or the head's output size (``C``'s) cannot be read.

    Examples:
        >>> import torch, torchvision
        >>> backbone = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        >>> model = TiCoAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> model.update_momentum(0.99)  # every step, before the forward pass
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> model.state_dict()["loss.C"].shape  # the running covariance, updated once
        torch.Size([256, 256])
    """

    loss: TiCoLoss

    _two_samples_because = "lightly's TiCoLoss needs a batch covariance"

    default_head = lightly_head(TiCoProjectionHead, 4096, 256)

    @staticmethod
    def default_loss(
        head: nn.Module, beta: float | None = None, rho: float | None = None
    ) -> TiCoLoss:
        """lightly's ``TiCoLoss(beta, rho)``, by default ``beta=0.9`` and ``rho=8.0``."""
        beta = check_real("beta", 0.9 if beta is None else beta, 0.0, 1.0)
        rho = check_real("rho", 8.0 if rho is None else rho, 0.0)
        return TiCoLoss(beta=beta, rho=rho)

    def check_loss(self, loss: nn.Module, head: nn.Module) -> None:
        """Raises unless ``loss`` is a ``TiCoLoss`` and the head's output size can be read."""
        head_output_dim(head, "size TiCo's running covariance C")
        if not isinstance(loss, TiCoLoss):
            raise TypeError(
                f"loss must be a lightly TiCoLoss, got {type(loss).__name__}: the adapter "
                "calls it with update_covariance_matrix=False for the twin half. Pass "
                "TiCoLoss(beta=..., rho=...)."
            )

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Symmetric loss of one step (``x0`` dense, ``x1`` twin); ``C`` from the dense half."""
        z0, z1 = self._online(x0, x1)
        k0, k1 = self._targets(x0, x1)
        twin_half: Tensor = self.loss(z1, k0, update_covariance_matrix=False)
        dense_half: Tensor = self.loss(z0, k1, update_covariance_matrix=z0.requires_grad)
        return (twin_half + dense_half) / 2
