"""The generic adapter for a method whose step is ``loss(z0, z1)`` on two online projections."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn
from typing_extensions import Unpack

from selfdamage.adapters.base import SelfDamagingAdapter
from selfdamage.adapters.options import (
    WrapperOptions,
    default_temperature,
    memory_bank,
    reject_with_loss,
)
from selfdamage.wrapper import DEFAULT_PRUNE_RATIO

__all__ = ["DefaultsTwoView", "TwoViewAdapter"]


class TwoViewAdapter(SelfDamagingAdapter):
    """Any two-view method with a loss on the two online projections, with a damaged twin.

    For methods whose step is ``loss(head(f(x0)), head(f(x1)))`` with no momentum branch
    and no predictor: SimCLR, Barlow Twins, VICReg, DCL, DCLW, or your own loss. SDCLR [0]
    sends the second online pass through the pruned twin, and nothing else changes::

        loss = loss(head(dense(x0)), head_twin(twin(x1)))

    so a step costs what a step of the method costs. ``x0`` always goes through the dense
    branch. Backbone and head are wrapped together in one
    :class:`~selfdamage.wrapper.SelfDamagingWrapper` (``self.wrapper``): the head's Linear
    weights are shared by both branches and not pruned by default, its BatchNorm layers get
    twin state. ``baseline=True`` gives the plain method (both views through the dense
    model, same head, same loss), for fair baselines.

    The loss is called once, on the dense projections first. lightly's two-view losses
    are symmetric in their two arguments (``NTXentLoss``, ``BarlowTwinsLoss``,
    ``VICRegLoss``, ``DCLLoss``, ``DCLWLoss``), so which view goes through the twin does
    not matter to them. For an asymmetric loss, symmetrise it yourself (call the loss on
    both orders and average), or subclass and write ``forward`` from :meth:`_online`.

    SimCLR, Barlow Twins, VICReg, DCL and DCLW have adapters with their default head and
    loss (:class:`~selfdamage.adapters.SimCLRAdapter`, ...); this class takes yours.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter, see
            :class:`~selfdamage.adapters.SelfDamagingAdapter`, as are the wrapper
            options (``**options``); ``baseline=True`` gives the
            plain method, for baselines.
        head: The projection head, applied to the flattened features of both views.
        loss: The loss, called as ``loss(z0, z1)`` on the two ``(N, D)`` projections and
            returning a scalar; it must not have a lightly memory bank (it would fill with
            the twin's projections).

    Raises:
        TypeError: As on every adapter; ``head`` and ``loss`` are needed.
        ValueError: As on every adapter; or ``loss`` has a memory bank.

    Examples:
        >>> import torch, torchvision
        >>> from torch import nn
        >>> from lightly.loss import BarlowTwinsLoss
        >>> from lightly.models.modules import BarlowTwinsProjectionHead
        >>> resnet = torchvision.models.resnet18()
        >>> backbone = nn.Sequential(*list(resnet.children())[:-1])  # (N, 512, 1, 1)
        >>> model = TwoViewAdapter(
        ...     backbone,
        ...     feature_dim=512,
        ...     prune_ratio=0.9,
        ...     head=BarlowTwinsProjectionHead(512, 2048, 2048),
        ...     loss=BarlowTwinsLoss(),
        ... )
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
        >>> x0, x1 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)  # two views
        >>> model.refresh_mask()  # at the start of every epoch
        >>> loss = model(x0, x1)  # one dense pass, one twin pass, one loss
        >>> loss.backward()
        >>> optimizer.step()
        >>> loss.shape
        torch.Size([])
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int = 512,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        head: nn.Module | None,
        loss: nn.Module | None,
        **options: Unpack[WrapperOptions],
    ) -> None:
        super().__init__(backbone, feature_dim, prune_ratio, head=head, loss=loss, **options)

    @staticmethod
    def default_head(feature_dim: int) -> nn.Module:
        """None here: raises, ``head=`` is needed (the named adapters have defaults)."""
        raise _no_default("head")

    @staticmethod
    def default_loss(head: nn.Module) -> nn.Module:
        """None here: raises, ``loss=`` is needed (the named adapters have defaults)."""
        raise _no_default("loss")

    def check_loss(self, loss: nn.Module, head: nn.Module) -> None:
        """Raises if ``loss`` has a memory bank: it would fill with the twin's projections."""
        if memory_bank(loss) is not None:
            raise ValueError(
                f"loss has a memory bank, but {type(self).__name__} contrasts within the "
                "batch: the bank would fill with the twin's projections. Use a loss without "
                "one (e.g. NTXentLoss(memory_bank_size=0)), or MoCoAdapter for a memory bank."
            )

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The loss of one step: ``loss(z0, z1)``, ``z0`` dense, ``z1`` from the twin.

        Args:
            x0: First views, shape ``(N, ...)``: through the dense model.
            x1: Second views of the same samples, same shape: through the twin.

        Returns:
            The loss, a scalar tensor.
        """
        loss: Tensor = self.loss(*self._online(x0, x1))
        return loss


class DefaultsTwoView(TwoViewAdapter):
    """A :class:`TwoViewAdapter` whose head and loss default to the method's.

    The base of a named two-view method: declare :meth:`default_head` and
    :meth:`default_loss`, and register the class (Barlow Twins and VICReg are this).

    Examples:
        >>> import torch
        >>> from lightly.loss import NTXentLoss
        >>> class Contrastive(DefaultsTwoView):
        ...     default_head = staticmethod(lambda feature_dim: nn.Linear(feature_dim, 8))
        ...     default_loss = staticmethod(lambda head: NTXentLoss())
        >>> backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
        >>> model = Contrastive(backbone, 4, prune_ratio=0.5)
        >>> model(torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int = 512,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        head: nn.Module | None = None,
        loss: nn.Module | None = None,
        **options: Unpack[WrapperOptions],
    ) -> None:
        super().__init__(backbone, feature_dim, prune_ratio, head=head, loss=loss, **options)


class TemperatureTwoView(TwoViewAdapter):
    """A :class:`TwoViewAdapter` whose default loss takes a ``temperature``: SimCLR's, DCL's."""

    _loss_class: ClassVar[Callable[..., nn.Module]]  # the default loss, given temperature=
    _temperature: ClassVar[float]  # the default loss's default temperature

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int = 512,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        head: nn.Module | None = None,
        loss: nn.Module | None = None,
        temperature: float | None = None,
        **options: Unpack[WrapperOptions],
    ) -> None:
        head = self.resolve_head(feature_dim, head)
        reject_with_loss(loss, temperature=temperature)
        if loss is None:
            loss = self.default_loss(head, temperature)
        super().__init__(backbone, feature_dim, prune_ratio, head=head, loss=loss, **options)

    @classmethod
    def default_loss(cls, head: nn.Module, temperature: float | None = None) -> nn.Module:
        """The method's loss at ``temperature``, or at the method's default temperature."""
        return cls._loss_class(temperature=default_temperature(temperature, cls._temperature))


def _no_default(name: str) -> TypeError:
    return TypeError(
        f"{name} must be a torch.nn.Module, got None. TwoViewAdapter has no default {name}: "
        "pass one, or use the adapter of your method (SimCLRAdapter, BarlowTwinsAdapter, "
        "VICRegAdapter, DCLAdapter, DCLWAdapter) for lightly's."
    )
