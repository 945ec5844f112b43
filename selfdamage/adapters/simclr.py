"""SDCLR on lightly's SimCLR: the method of the paper."""

from __future__ import annotations

from lightly.loss import NTXentLoss

from selfdamage.adapters.registry import register_adapter
from selfdamage.adapters.two_view import TemperatureTwoView

__all__ = ["SimCLRAdapter"]


@register_adapter("simclr")
class SimCLRAdapter(TemperatureTwoView):
    """SimCLR [1] with a self-damaged twin: SDCLR [0] itself; ``forward`` returns the loss.

    :class:`~selfdamage.adapters.TwoViewAdapter` with SimCLR's head and loss as defaults::

        loss = NTXent(head(dense(x0)), head_twin(twin(x1)))

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: Defaults to lightly's ``SimCLRProjectionHead(feature_dim, feature_dim, 128)``.
        loss: Called as ``loss(out0, out1)`` on ``(N, D)`` projections, without a memory
            bank. Defaults to ``NTXentLoss(temperature)``.
        temperature: Of the default loss, a float only without ``loss``. Defaults to 0.2,
            SDCLR's CIFAR setting (lightly's example: 0.5). Or a schedule: see
            :class:`~selfdamage.adapters.TwoViewAdapter`.

    Raises:
        TypeError: Also if ``temperature`` is a schedule and ``loss`` has no float one.
        ValueError: Also if ``temperature`` is not positive or is a float given with
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
