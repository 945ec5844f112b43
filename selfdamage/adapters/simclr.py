"""SDCLR on lightly's SimCLR: the method of the paper."""

from __future__ import annotations

from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from selfdamage.adapters.registry import register_adapter
from selfdamage.adapters.two_view import TemperatureTwoView

__all__ = ["SimCLRAdapter"]


@register_adapter("simclr")
class SimCLRAdapter(TemperatureTwoView):
    """SimCLR with a self-damaged twin (SDCLR [0]); ``forward`` returns the loss.

    SimCLR makes two online passes per step and contrasts them with NT-Xent [1]. SDCLR
    sends the second one through the pruned twin, and nothing else changes::

        loss = NTXent(head(dense(x0)), head_twin(twin(x1)))

    so a step costs what a SimCLR step costs. ``x0`` always goes through the dense branch.
    Backbone and projection head are wrapped together in one
    :class:`~selfdamage.wrapper.SelfDamagingWrapper` (``self.wrapper``): the head's
    Linear weights are shared by both branches and not pruned by default, its BatchNorm
    layers get twin state ("dual BN" in the reference code). ``baseline=True`` gives plain
    SimCLR, both views through the dense model, same head, same loss: the baseline of a
    fair comparison. It is :class:`~selfdamage.adapters.TwoViewAdapter` with SimCLR's
    head and loss as defaults.

    Under DDP, pass ``loss=NTXentLoss(temperature=..., gather_distributed=True)`` for
    negatives from all ranks, as the reference code does.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter, see
            :class:`~selfdamage.adapters.SelfDamagingAdapter`, as are the wrapper
            options (``**options``); ``feature_dim`` is 512 for a ResNet-18, the paper's
            CIFAR backbone, and ``baseline=True`` gives plain SimCLR.
        head: The projection head. Defaults to lightly's
            ``SimCLRProjectionHead(feature_dim, feature_dim, 128)`` (hidden width as wide
            as the input, with BatchNorm, to 128-d: the SimCLR paper's sizes and lightly's
            ``examples/pytorch/simclr.py``, ``SimCLRProjectionHead(512, 512, 128)``).
        loss: The loss, called as ``loss(out0, out1)`` on ``(N, D)`` projections, e.g.
            lightly's ``NTXentLoss``; it must not have a memory bank. Defaults to
            ``NTXentLoss(temperature)``.
        temperature: Temperature of the default loss. Defaults to 0.2, the SDCLR
            paper's setting on CIFAR. lightly's ``NTXentLoss`` defaults to 0.5, which its
            ``examples/pytorch/simclr.py`` uses (``NTXentLoss()``); pass
            ``temperature=0.5`` to match it. Only without ``loss``.

    Raises:
        TypeError: As on every adapter.
        ValueError: As on every adapter; or ``temperature`` is not positive or is given with
            ``loss``, or ``loss`` has a memory bank.

    Examples:
        >>> import torch, torchvision
        >>> from torch import nn
        >>> resnet = torchvision.models.resnet18()
        >>> backbone = nn.Sequential(*list(resnet.children())[:-1])  # (N, 512, 1, 1)
        >>> model = SimCLRAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
        >>> x0, x1 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)  # two views
        >>> model.refresh_mask()  # at the start of every epoch
        >>> loss = model(x0, x1)  # one dense pass, one twin pass, one loss
        >>> loss.backward()
        >>> optimizer.step()
        >>> _ = model.eval()
        >>> with torch.no_grad():
        ...     model.embed(x0).shape
        torch.Size([4, 512])
    """

    _loss_class = NTXentLoss
    _temperature = 0.2

    @staticmethod
    def default_head(feature_dim: int) -> nn.Module:
        """lightly's ``SimCLRProjectionHead(feature_dim, feature_dim, 128)``."""
        module: nn.Module = SimCLRProjectionHead(feature_dim, feature_dim, 128)
        return module
