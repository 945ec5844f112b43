"""The generic adapter for a method whose step is ``loss(z0, z1)`` on two online projections."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from lightly.models.modules import SimCLRProjectionHead
from torch import Tensor, nn

from selfdamage.adapters._loss_options import default_temperature, memory_bank
from selfdamage.adapters.base import SelfDamagingAdapter
from selfdamage.adapters.heads import lightly_head

__all__ = ["TwoViewAdapter"]


class TwoViewAdapter(SelfDamagingAdapter):
    """Any two-view method with a loss on the two online projections, with a damaged twin.

    For methods whose step is ``loss(head(f(x0)), head(f(x1)))``, without momentum branch or
    predictor: SimCLR, Barlow Twins, VICReg, DCL, DCLW, or yours. SDCLR [0] sends the second
    online pass through the pruned twin::

        loss = loss(head(dense(x0)), head_twin(twin(x1)))

    The loss is called once, dense projections first: give it a symmetric loss (lightly's
    two-view losses are), symmetrise it, or subclass and write ``forward`` from
    ``_online``. A named method is a subclass with defaults (:doc:`/architecture`).

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter, see
            :class:`~selfdamage.adapters.SelfDamagingAdapter`, as are the wrapper options.
        head: The projection head, applied to the flattened features of both views.
        loss: Called as ``loss(z0, z1)`` on the two ``(N, D)`` projections, returning a
            scalar; without a lightly memory bank (it would fill with the twin's projections).
            ``return_per_sample=True`` needs a per-sample form of it, see
            :func:`~selfdamage.longtail.per_sample.per_sample_loss`.
        temperature: A :class:`~selfdamage.longtail.temperature.TemperatureSchedule` (e.g.
            ``CosineTemperature()``), here only with a ``loss`` that has a float
            ``temperature`` (lightly's ``NTXentLoss``, ``DCLLoss``, ``DCLWLoss``). On this
            and every adapter that takes one (also with ``loss``), it becomes the submodule
            ``temperature_schedule`` (its progress in the ``state_dict``) and sets the loss's
            temperature at the start of every forward. Step it yourself,
            ``model.temperature_schedule.step()``, once per epoch as its authors do.

    Raises:
        TypeError: As on every adapter; ``head`` and ``loss`` are needed; or
            ``temperature`` is given with a loss without a float ``temperature``.
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

        A named method declares its defaults:

        >>> from lightly.loss import NTXentLoss
        >>> class Contrastive(TwoViewAdapter):
        ...     default_head = staticmethod(lambda feature_dim: nn.Linear(feature_dim, 8))
        ...     default_loss = staticmethod(lambda head: NTXentLoss())
        >>> backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
        >>> model = Contrastive(backbone, 4, prune_ratio=0.5)
        >>> model(torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)).shape
        torch.Size([])
    """

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
        """The loss of one step, a scalar tensor: ``loss(z0, z1)``.

        ``x0``, shape ``(N, ...)``, goes through the dense model; ``x1``, second views of the
        same samples, same shape, through the twin.
        """
        loss: Tensor = self.loss(*self._online(x0, x1))
        return loss


class TemperatureTwoView(TwoViewAdapter):
    """The base of SimCLR, DCL and DCLW: SimCLR's head, a loss class at a ``temperature``."""

    _loss_class: ClassVar[Callable[..., nn.Module]]  # the default loss, given temperature=
    _temperature: ClassVar[float]  # the default loss's default temperature

    default_head = lightly_head(SimCLRProjectionHead, None, 128)

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
