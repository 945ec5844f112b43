"""SDCLR on lightly's SimSiam: a predictor, stop-gradient targets, no momentum network."""

from __future__ import annotations

from typing import Any

from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from torch import Tensor, nn

from selfdamage._checks import check_module
from selfdamage.adapters.base import SelfDamagingAdapter
from selfdamage.adapters.options import check_feature_dim, check_predictor, head_output_dim
from selfdamage.damage import Damage, Prunable
from selfdamage.wrapper import DEFAULT_PRUNABLE, DEFAULT_PRUNE_RATIO, DEFAULT_RANDOM_RATIO

__all__ = ["SimSiamAdapter"]


class SimSiamAdapter(SelfDamagingAdapter):
    """SimSiam [1] with a self-damaged twin; ``forward`` returns the loss.

    SimSiam makes two online passes per step; each gives a projection ``z`` and a
    prediction ``p``, and each prediction is pulled towards the *other* pass's projection
    under a stop-gradient. SDCLR [0] sends the second pass through the pruned twin::

        z0, p0 = projector(dense(x0)), predictor(z0)
        z1, p1 = projector_twin(twin(x1)), predictor_twin(z1)
        loss = (NegCos(p0, z1.detach()) + NegCos(p1, z0.detach())) / 2

    So the dense prediction's stop-gradient target is the twin's projection and the
    twin's prediction's target the dense projection: the targets come from the two
    passes SimSiam makes anyway, no extra pass, and a step costs what a SimSiam step
    costs. (Dense targets for both predictions would need a third, dense pass of ``x1``.)
    With ``prune_ratio=0`` and a fresh twin it is exactly SimSiam. The projector and the
    predictor are in the wrapped encoder: their Linear weights are shared by both
    branches, their BatchNorm layers get twin state. SDCLR defines only the SimCLR
    variant; this form is the library's choice, following the paper's argument that the
    idea applies to any two-branch method. ``baseline=True`` gives SimSiam as in lightly's
    ``examples/pytorch/simsiam.py``, with the same heads and loss.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] SimSiam, 2021, https://arxiv.org/abs/2011.10566

    Args:
        backbone: Any module mapping an input batch to ``feature_dim`` features per
            sample; its output is flattened with ``flatten(start_dim=1)``, so include any
            global pooling in it. Trained in place; also reachable as ``self.backbone``.
        feature_dim: The backbone's number of output features (512 for a ResNet-18).
        prune_ratio: Shorthand for ``damage=WeightDamage(prune_ratio, ...)``: fraction of
            the prunable weights the twin loses, 0.9 on CIFAR and 0.3 on ImageNet-100 in
            the SDCLR paper.
        head: The projection head. Defaults to lightly's
            ``SimSiamProjectionHead(feature_dim, feature_dim, 128)``, the sizes of lightly's
            ``examples/pytorch/simsiam.py`` (``SimSiamProjectionHead(512, 512, 128)``; the
            SimSiam paper uses 2048-d on ImageNet).
        predictor: The prediction head. Defaults to lightly's
            ``SimSiamPredictionHead(D, D // 2, D)``, where ``D`` is the ``out_features`` of
            the head's last ``nn.Linear`` (128 by default): lightly's example,
            ``SimSiamPredictionHead(128, 64, 128)``.
        loss: The loss, called as ``loss(predictions, targets)`` on ``(N, D)`` tensors.
            Defaults to lightly's ``NegativeCosineSimilarity()``.
        damage, baseline, random_ratio, prunable, twin_norm: The wrapper options, the
            same on every adapter: see :class:`~selfdamage.adapters.SelfDamagingAdapter`.
            ``baseline=True`` gives the plain method, for baselines.
        **deprecated_options: 0.1's spellings, see
            :class:`~selfdamage.adapters.SelfDamagingAdapter`.

    Raises:
        TypeError: If ``backbone``, ``head``, ``predictor`` or ``loss`` is not an
            ``nn.Module``, or an option has the wrong type.
        ValueError: If ``feature_dim`` is not positive, the head's output dimension
            cannot be read for the default predictor, ``predictor`` does not map it to
            itself, or a wrapper option is out of range.

    Examples:
        >>> import torch, torchvision
        >>> from torch import nn
        >>> resnet = torchvision.models.resnet18()
        >>> backbone = nn.Sequential(*list(resnet.children())[:-1])  # (N, 512, 1, 1)
        >>> model = SimSiamAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
        >>> x0, x1 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)  # two views
        >>> model.refresh_mask()  # at the start of every epoch
        >>> loss = model(x0, x1)  # one dense pass, one twin pass
        >>> loss.backward()
        >>> optimizer.step()
        >>> -1.0 <= loss.item() <= 1.0
        True
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int = 512,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        head: nn.Module | None = None,
        predictor: nn.Module | None = None,
        loss: nn.Module | None = None,
        damage: Damage | None = None,
        baseline: bool = False,
        random_ratio: float = DEFAULT_RANDOM_RATIO,
        prunable: Prunable = DEFAULT_PRUNABLE,
        twin_norm: bool = True,
        **deprecated_options: Any,
    ) -> None:
        feature_dim = check_feature_dim(feature_dim)
        if head is None:
            head = SimSiamProjectionHead(feature_dim, feature_dim, 128)
        head = check_module("head", head)
        if predictor is None:
            head_dim = head_output_dim(
                head,
                needed_for="build the default predictor",
                fix="Pass predictor=SimSiamPredictionHead(D, D // 2, D) with D the head's "
                "output dimension.",
            )
            predictor = SimSiamPredictionHead(head_dim, max(1, head_dim // 2), head_dim)
        predictor = check_predictor(predictor, head)
        super().__init__(
            backbone,
            head,
            feature_dim,
            prune_ratio,
            loss=NegativeCosineSimilarity() if loss is None else check_module("loss", loss),
            damage=damage,
            baseline=baseline,
            random_ratio=random_ratio,
            prunable=prunable,
            twin_norm=twin_norm,
            **deprecated_options,
            predictor=predictor,
        )

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The symmetric loss of one step.

        Args:
            x0: First views, shape ``(N, ...)``: through the dense model.
            x1: Second views of the same samples, same shape: through the twin.

        Returns:
            The loss, a scalar tensor.
        """
        (z0, p0), (z1, p1) = self._online(x0, x1, with_projection=True)
        loss: Tensor = (self.loss(p0, z1.detach()) + self.loss(p1, z0.detach())) / 2
        return loss
