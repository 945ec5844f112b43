"""The generic adapter for a method whose step is ``loss(z0, z1)`` on two online projections."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from selfdamage._checks import check_module
from selfdamage.adapters.base import SelfDamagingAdapter
from selfdamage.adapters.options import check_feature_dim, memory_bank
from selfdamage.damage import Damage, Prunable
from selfdamage.wrapper import DEFAULT_PRUNABLE, DEFAULT_PRUNE_RATIO, DEFAULT_RANDOM_RATIO

__all__ = ["TwoViewAdapter"]


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
        backbone: Any module mapping an input batch to ``feature_dim`` features per
            sample; its output is flattened with ``flatten(start_dim=1)``, so include any
            global pooling in it. Trained in place; also reachable as ``self.backbone``.
        feature_dim: The backbone's number of output features (512 for a ResNet-18).
        prune_ratio: Shorthand for ``damage=WeightDamage(prune_ratio, ...)``: fraction of
            the prunable weights the twin loses, 0.9 on CIFAR and 0.3 on ImageNet-100 in
            the SDCLR paper.
        head: The projection head, applied to the flattened features of both views.
        loss: The loss, called as ``loss(z0, z1)`` on the two ``(N, D)`` projections and
            returning a scalar; it must not have a lightly memory bank (it would fill with
            the twin's projections).
        damage, baseline, random_ratio, prunable, twin_norm: The wrapper options, the
            same on every adapter: see :class:`~selfdamage.adapters.SelfDamagingAdapter`.
            ``baseline=True`` gives the plain method, for baselines.
        **deprecated_options: 0.1's spellings, see
            :class:`~selfdamage.adapters.SelfDamagingAdapter`.

    Raises:
        TypeError: If ``backbone``, ``head`` or ``loss`` is not an ``nn.Module`` (or is
            missing), or an option has the wrong type.
        ValueError: If ``feature_dim`` is not positive, ``loss`` has a memory bank, or a
            wrapper option is out of range.

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
        head: nn.Module,
        loss: nn.Module,
        damage: Damage | None = None,
        baseline: bool = False,
        random_ratio: float = DEFAULT_RANDOM_RATIO,
        prunable: Prunable = DEFAULT_PRUNABLE,
        twin_norm: bool = True,
        **deprecated_options: Any,
    ) -> None:
        feature_dim = check_feature_dim(feature_dim)
        for name, value in (("head", head), ("loss", loss)):
            if value is None:
                raise TypeError(
                    f"{name} must be a torch.nn.Module, got None. {type(self).__name__} "
                    f"has no default {name}: pass one, or use the adapter of your method "
                    "(SimCLRAdapter, BarlowTwinsAdapter, VICRegAdapter, DCLAdapter, "
                    "DCLWAdapter) for lightly's."
                )
        head = check_module("head", head)
        if memory_bank(check_module("loss", loss)) is not None:
            raise ValueError(
                f"loss has a memory bank, but {type(self).__name__} contrasts within the "
                "batch: the bank would fill with the twin's projections. Use a loss without "
                "one (e.g. NTXentLoss(memory_bank_size=0)), or MoCoAdapter for a memory bank."
            )
        super().__init__(
            backbone,
            head,
            feature_dim,
            prune_ratio,
            loss=loss,
            damage=damage,
            baseline=baseline,
            random_ratio=random_ratio,
            prunable=prunable,
            twin_norm=twin_norm,
            **deprecated_options,
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
