"""SDCLR on lightly's decoupled contrastive learning: DCL, and DCLW with its weighting."""

from __future__ import annotations

from lightly.loss import DCLLoss, DCLWLoss

from selfdamage.adapters.registry import register_adapter
from selfdamage.adapters.two_view import TemperatureTwoView

__all__ = ["DCLAdapter", "DCLWAdapter"]


@register_adapter("dcl")
class DCLAdapter(TemperatureTwoView):
    """DCL [1] with a self-damaged twin (SDCLR [0]); ``forward`` returns the loss.

    SimCLR without the positive pair in the loss's denominator: a
    :class:`~selfdamage.adapters.TwoViewAdapter` with DCL's head and loss as defaults::

        loss = DCLLoss(head(dense(x0)), head_twin(twin(x1)))

    A step needs at least 2 samples per view, in eval mode too (with one, the loss is ``-inf``).

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] DCL, 2021, https://arxiv.org/abs/2110.06848

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: Defaults to SimCLR's, ``SimCLRProjectionHead(feature_dim, feature_dim, 128)``.
        loss: Called as ``loss(z0, z1)`` on ``(N, D)`` projections. Defaults to
            ``DCLLoss(temperature)``.
        temperature: Of the default loss, a float only without ``loss``. Defaults to 0.1,
            as lightly's. Or a schedule: see :class:`~selfdamage.adapters.TwoViewAdapter`.

    Raises:
        ValueError: Also if ``temperature`` is not positive or is given with ``loss``, or
            ``loss`` has a memory bank.

    Examples:
        >>> import torch, torchvision
        >>> backbone = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        >>> model = DCLAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> model.loss.temperature
        0.1
    """

    _loss_class = DCLLoss
    _temperature = 0.1
    _two_samples_because = (
        "DCL contrasts each sample with the batch's other samples; with one, the loss is -inf"
    )


@register_adapter("dclw")
class DCLWAdapter(DCLAdapter):
    """DCLW [1]: DCL with the negative von Mises-Fisher weighting of positives, and a twin.

    As :class:`DCLAdapter`, with lightly's ``DCLWLoss`` as the default loss.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] DCL, 2021, https://arxiv.org/abs/2110.06848

    Args:
        backbone, feature_dim, prune_ratio, head, temperature: As :class:`DCLAdapter` (and
            ``**options``).
        loss: Defaults to ``DCLWLoss(temperature, sigma=0.5)``, lightly's defaults; for
            another ``sigma`` pass ``loss=DCLWLoss(temperature=..., sigma=...)``.

    Examples:
        >>> import torch, torchvision
        >>> backbone = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        >>> model = DCLWAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> type(model.loss).__name__, model.loss.temperature
        ('DCLWLoss', 0.1)
    """

    _loss_class = DCLWLoss
