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
    """Symmetric TiCo [1] with a self-damaged twin; ``forward`` returns the loss.

    TiCo pulls an online projection towards the momentum network's projection of the
    other view (transformation invariance) and pushes it away from a running covariance
    ``C`` of past online projections (covariance contrast). Both views are online, one
    through the dense encoder and one through the pruned twin; targets come from the
    dense momentum encoder, without gradient::

        z0, z1 = head(dense(x0)), head_twin(twin(x1))
        k0, k1 = momentum_encoder(x0), momentum_encoder(x1)
        loss = (L(z1, k0, update_covariance_matrix=False) + L(z0, k1)) / 2

    with ``L`` lightly's ``TiCoLoss``: the *symmetric* form of TiCo, as
    :class:`~selfdamage.adapters.MoCoAdapter` is of MoCo (lightly's
    ``examples/pytorch/tico.py`` makes one online and one momentum pass; SDCLR [0] needs
    two online passes). ``baseline=True`` gives symmetric TiCo with the same head and loss.

    The running covariance ``C`` is the method's state and is updated once per step, as in
    lightly's example, from the *dense* half only: ``C <- beta * C + (1 - beta) * B`` with
    ``B = z0^T z0 / N`` of the normalized dense projections. The twin half is computed
    first, with ``update_covariance_matrix=False``, so both halves see ``C`` as it was
    before the step (each half's covariance term uses ``beta * C + (1 - beta) * B`` of its
    own projections, as ``TiCoLoss`` defines it). The twin's projections never enter ``C``:
    it follows the dense model, the one that is evaluated, and the number of updates per
    step is the base method's. The baseline updates ``C`` from ``z0`` too. ``C`` is a buffer
    in the ``state_dict`` (``loss.C``); evaluating the loss without gradient leaves it as it
    is. Under DDP, pass ``loss=TiCoLoss(gather_distributed=True)``: DDP broadcasts rank 0's
    buffers before every forward pass, so without gathering ``C`` follows rank 0's
    projections only.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] TiCo, 2022, https://arxiv.org/abs/2206.10698

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: The projection head. Defaults to lightly's
            ``TiCoProjectionHead(feature_dim, 4096, 256)``, the TiCo paper's sizes (hidden
            width 4096). lightly's ``examples/pytorch/tico.py`` uses
            ``TiCoProjectionHead(512, 1024, 256)``; pass
            ``head=TiCoProjectionHead(feature_dim, 1024, 256)`` to match it.
        loss: The loss, lightly's ``TiCoLoss`` (or a subclass: it is called with
            ``update_covariance_matrix=False`` for the twin half). Defaults to
            ``TiCoLoss(beta, rho)``.
        beta: EMA coefficient of the running covariance of the default loss. Defaults to
            0.9, the TiCo paper's and lightly's. Only without ``loss``.
        rho: Weight of the covariance term of the default loss. Defaults to 8.0, the TiCo
            paper's and lightly's. Only without ``loss``.

    Raises:
        TypeError: Also if ``loss`` is not a ``TiCoLoss``.
        ValueError: Also if ``beta`` or ``rho`` is given with ``loss``,
            ``beta`` is not in ``[0, 1]`` or ``rho`` is negative, or the head's output
            dimension cannot be read to size ``C``.

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
        """Raises unless ``loss`` is a ``TiCoLoss`` (the twin half calls it without update)
        and the head's output size, the size of ``C``, can be read."""
        head_output_dim(
            head,
            needed_for="size TiCo's running covariance C",
            fix="Use a head whose last nn.Linear gives the projection.",
        )
        if not isinstance(loss, TiCoLoss):
            raise TypeError(
                f"loss must be a lightly TiCoLoss, got {type(loss).__name__}: the adapter "
                "calls it with update_covariance_matrix=False for the twin half. Pass "
                "TiCoLoss(beta=..., rho=...)."
            )

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The symmetric loss of one step (``x0`` dense, ``x1`` through the twin); updates
        ``C`` once, from the dense half."""
        z0, z1 = self._online(x0, x1)
        k0, k1 = self._targets(x0, x1)
        twin_half: Tensor = self.loss(z1, k0, update_covariance_matrix=False)
        dense_half: Tensor = self.loss(z0, k1, update_covariance_matrix=z0.requires_grad)
        return (twin_half + dense_half) / 2
