"""SDCLR on lightly's decoupled contrastive learning: DCL, and DCLW with its weighting."""

from __future__ import annotations

from lightly.loss import DCLLoss, DCLWLoss

from selfdamage.adapters.registry import register_adapter
from selfdamage.adapters.two_view import TemperatureTwoView

__all__ = ["DCLAdapter", "DCLWAdapter"]


@register_adapter("dcl")
class DCLAdapter(TemperatureTwoView):
    """DCL [1] with a self-damaged twin; ``forward`` returns the loss.

    DCL is SimCLR with the positive pair removed from the denominator of the contrastive
    loss ("decoupled"). Of its two online passes, one goes through the dense model and one
    through the pruned twin::

        loss = DCLLoss(head(dense(x0)), head_twin(twin(x1)))

    lightly's ``DCLLoss`` is already symmetrised (the mean of the loss of ``x0``'s
    projections against ``x1``'s and the reverse, each with negatives from both views), so
    this is lightly's step with the twin in place of the second pass, and
    ``baseline=True`` is lightly's ``examples/pytorch/dcl.py`` with the same head and loss.
    SDCLR [0] defines only the SimCLR variant; DCL differs from it only in the loss, and
    damaging the second pass is the same choice (the rule of
    :class:`~selfdamage.adapters.TwoViewAdapter`). A step needs at least 2 samples per
    view, in eval mode too: with one there is no negative, and the loss is ``-inf``.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] DCL, 2021, https://arxiv.org/abs/2110.06848

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: The projection head. Defaults to lightly's
            ``SimCLRProjectionHead(feature_dim, feature_dim, 128)``, as lightly's
            ``examples/pytorch/dcl.py`` (``SimCLRProjectionHead(512, 512, 128)``): DCL
            uses SimCLR's head.
        loss: The loss, called as ``loss(z0, z1)`` on ``(N, D)`` projections. Defaults to
            ``DCLLoss(temperature)``; under DDP pass
            ``loss=DCLLoss(temperature=..., gather_distributed=True)``.
        temperature: Temperature of the default loss. Defaults to 0.1, ``DCLLoss``'s
            default, which lightly's ``examples/pytorch/dcl.py`` (``DCLLoss()``) and its
            ImageNet benchmark use. A float only without ``loss``.
            Or a :class:`~selfdamage.longtail.temperature.TemperatureSchedule` (e.g.
            ``CosineTemperature()``), also with ``loss``: it becomes the submodule
            ``temperature_schedule`` (its progress in the ``state_dict``) and sets the
            loss's temperature at the start of every forward. Step it yourself,
            ``model.temperature_schedule.step()`` once per epoch as its authors do.

    Raises:
        ValueError: Also if ``temperature`` is not positive or is given with
            ``loss``, or ``loss`` has a memory bank.

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

    As :class:`DCLAdapter`, with lightly's ``DCLWLoss`` as the default loss: the positive
    term of each sample is weighted by ``2 - N * softmax(sim / sigma)`` over the batch,
    from detached projections. The weighting is symmetric in the two views, so the loss is
    too, and ``baseline=True`` is lightly's ``examples/pytorch/dcl.py`` with its commented
    alternative ``criterion = DCLWLoss()`` (lightly has no separate DCLW example).

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] DCL, 2021, https://arxiv.org/abs/2110.06848

    Args:
        backbone, feature_dim, prune_ratio, head: As :class:`DCLAdapter`, as are the
            wrapper options (``**options``).
        loss: The loss, called as ``loss(z0, z1)`` on ``(N, D)`` projections. Defaults to
            ``DCLWLoss(temperature, sigma=0.5)``: ``sigma`` is lightly's default and that
            of its DCLW benchmark; for another, or ``gather_distributed=True`` under DDP,
            pass ``loss=DCLWLoss(temperature=..., sigma=..., gather_distributed=...)``.
        temperature: Temperature of the default loss. Defaults to 0.1, ``DCLWLoss``'s
            default, as lightly's example and benchmark. A float only without ``loss``;
            or a schedule, as for :class:`DCLAdapter`.

    Examples:
        >>> import torch, torchvision
        >>> backbone = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        >>> model = DCLWAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> type(model.loss).__name__, model.loss.temperature
        ('DCLWLoss', 0.1)
    """

    _loss_class = DCLWLoss
