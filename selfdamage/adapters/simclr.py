"""SDCLR on lightly's SimCLR: the method of the paper."""

from __future__ import annotations

from lightly.loss import NTXentLoss

from selfdamage.adapters.registry import register_adapter
from selfdamage.adapters.two_view import TemperatureTwoView

__all__ = ["SimCLRAdapter"]


@register_adapter("simclr")
class SimCLRAdapter(TemperatureTwoView):
    """SimCLR with a self-damaged twin (SDCLR [0]); ``forward`` returns the loss.

    SimCLR makes two online passes per step and contrasts them with NT-Xent [1]. SDCLR
    sends the second one through the pruned twin, and nothing else changes::

        loss = NTXent(head(dense(x0)), head_twin(twin(x1)))

    so a step costs what a SimCLR step costs; ``baseline=True`` gives plain SimCLR with the
    same head and loss. It is :class:`~selfdamage.adapters.TwoViewAdapter` with SimCLR's
    head and loss as defaults.

    Under DDP, pass ``loss=NTXentLoss(temperature=..., gather_distributed=True)`` for
    negatives from all ranks, as the reference code does.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
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
            ``temperature=0.5`` to match it. A float only without ``loss``.
            Or a :class:`~selfdamage.longtail.temperature.TemperatureSchedule` (e.g.
            ``CosineTemperature()``), also with ``loss``: it becomes the submodule
            ``temperature_schedule`` (its progress in the ``state_dict``) and sets the
            loss's temperature at the start of every forward. Step it yourself,
            ``model.temperature_schedule.step()`` once per epoch as its authors do.

    Raises:
        TypeError: Also if ``temperature`` is a schedule and ``loss`` has no float
            ``temperature``.
        ValueError: Also if ``temperature`` is not positive or is a float that
            comes with ``loss``, or ``loss`` has a memory bank.

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

        With the cosine temperature schedule of Kukleva et al., stepped once per epoch:

        >>> from selfdamage.longtail.temperature import CosineTemperature
        >>> model = SimCLRAdapter(backbone, 512, temperature=CosineTemperature())
        >>> for epoch in range(2):
        ...     loss = model(x0, x1)  # sets model.loss.temperature first
        ...     model.temperature_schedule.step()  # at the end of every epoch
        >>> round(model.loss.temperature, 6), round(model.temperature_schedule.value, 6)
        (0.999944, 0.999778)
    """

    _loss_class = NTXentLoss
    _temperature = 0.2
