"""SDCLR on lightly's decoupled contrastive learning: DCL, and DCLW with its weighting."""

from __future__ import annotations

from typing import Any, ClassVar

from lightly.loss import DCLLoss, DCLWLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from selfdamage.adapters.options import (
    check_feature_dim,
    default_temperature,
    reject_with_loss,
)
from selfdamage.adapters.two_view import TwoViewAdapter
from selfdamage.damage import Damage, Prunable
from selfdamage.wrapper import DEFAULT_PRUNABLE, DEFAULT_PRUNE_RATIO, DEFAULT_RANDOM_RATIO

__all__ = ["DCLAdapter", "DCLWAdapter"]


class DCLAdapter(TwoViewAdapter):
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
        backbone: Any module mapping an input batch to ``feature_dim`` features per
            sample; its output is flattened with ``flatten(start_dim=1)``, so include any
            global pooling in it. Trained in place; also reachable as ``self.backbone``.
        feature_dim: The backbone's number of output features (512 for a ResNet-18).
        prune_ratio: Shorthand for ``damage=WeightDamage(prune_ratio, ...)``: fraction of
            the prunable weights the twin loses, 0.9 on CIFAR and 0.3 on ImageNet-100 in
            the SDCLR paper.
        head: The projection head. Defaults to lightly's
            ``SimCLRProjectionHead(feature_dim, feature_dim, 128)``, as lightly's
            ``examples/pytorch/dcl.py`` (``SimCLRProjectionHead(512, 512, 128)``): DCL
            uses SimCLR's head.
        loss: The loss, called as ``loss(z0, z1)`` on ``(N, D)`` projections. Defaults to
            ``DCLLoss(temperature)``; under DDP pass
            ``loss=DCLLoss(temperature=..., gather_distributed=True)``.
        temperature: Temperature of the default loss. Defaults to 0.1, ``DCLLoss``'s
            default, which lightly's ``examples/pytorch/dcl.py`` (``DCLLoss()``) and its
            ImageNet benchmark use. Only without ``loss``.
        damage, baseline, random_ratio, prunable, twin_norm: The wrapper options, the
            same on every adapter: see :class:`~selfdamage.adapters.SelfDamagingAdapter`.
            ``baseline=True`` gives the plain method, for baselines.
        **deprecated_options: 0.1's spellings, see
            :class:`~selfdamage.adapters.SelfDamagingAdapter`.

    Raises:
        TypeError: If ``backbone``, ``head`` or ``loss`` is not an ``nn.Module``, or an
            option has the wrong type.
        ValueError: If ``feature_dim`` or ``temperature`` is not positive,
            ``temperature`` is given with ``loss``, ``loss`` has a memory bank, or a
            wrapper option is out of range.

    Examples:
        >>> import torch, torchvision
        >>> from torch import nn
        >>> resnet = torchvision.models.resnet18()
        >>> backbone = nn.Sequential(*list(resnet.children())[:-1])  # (N, 512, 1, 1)
        >>> model = DCLAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
        >>> x0, x1 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)  # two views
        >>> model.refresh_mask()  # at the start of every epoch
        >>> loss = model(x0, x1)
        >>> loss.backward()
        >>> optimizer.step()
        >>> model.loss.temperature
        0.1
    """

    _default_loss: ClassVar[type[nn.Module]] = DCLLoss
    """The class of the default loss, built with ``temperature=``."""

    _two_samples_because = (
        "DCL contrasts each sample with the batch's other samples; with one, the loss is -inf"
    )

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int = 512,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        head: nn.Module | None = None,
        loss: nn.Module | None = None,
        temperature: float | None = None,
        damage: Damage | None = None,
        baseline: bool = False,
        random_ratio: float = DEFAULT_RANDOM_RATIO,
        prunable: Prunable = DEFAULT_PRUNABLE,
        twin_norm: bool = True,
        **deprecated_options: Any,
    ) -> None:
        feature_dim = check_feature_dim(feature_dim)
        if head is None:
            head = SimCLRProjectionHead(feature_dim, feature_dim, 128)
        reject_with_loss(loss, temperature=temperature)
        if loss is None:
            loss = self._default_loss(temperature=default_temperature(temperature, 0.1))
        super().__init__(
            backbone,
            feature_dim,
            prune_ratio,
            head=head,
            loss=loss,
            damage=damage,
            baseline=baseline,
            random_ratio=random_ratio,
            prunable=prunable,
            twin_norm=twin_norm,
            **deprecated_options,
        )


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
        backbone, feature_dim, prune_ratio, head: As :class:`DCLAdapter`.
        loss: The loss, called as ``loss(z0, z1)`` on ``(N, D)`` projections. Defaults to
            ``DCLWLoss(temperature, sigma=0.5)``: ``sigma`` is lightly's default and that
            of its DCLW benchmark; for another, or ``gather_distributed=True`` under DDP,
            pass ``loss=DCLWLoss(temperature=..., sigma=..., gather_distributed=...)``.
        temperature: Temperature of the default loss. Defaults to 0.1, ``DCLWLoss``'s
            default, as lightly's example and benchmark. Only without ``loss``.
        damage, baseline, random_ratio, prunable, twin_norm: The wrapper options, the
            same on every adapter: see :class:`~selfdamage.adapters.SelfDamagingAdapter`.
        **deprecated_options: 0.1's spellings, see
            :class:`~selfdamage.adapters.SelfDamagingAdapter`.

    Raises:
        TypeError: If ``backbone``, ``head`` or ``loss`` is not an ``nn.Module``, or an
            option has the wrong type.
        ValueError: If ``feature_dim`` or ``temperature`` is not positive,
            ``temperature`` is given with ``loss``, ``loss`` has a memory bank, or a
            wrapper option is out of range.

    Examples:
        >>> import torch, torchvision
        >>> from torch import nn
        >>> resnet = torchvision.models.resnet18()
        >>> backbone = nn.Sequential(*list(resnet.children())[:-1])  # (N, 512, 1, 1)
        >>> model = DCLWAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> type(model.loss).__name__, model.loss.temperature
        ('DCLWLoss', 0.1)
    """

    _default_loss = DCLWLoss
