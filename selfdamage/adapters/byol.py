"""SDCLR on lightly's BYOL: a predictor on the online side and a momentum target network."""

from __future__ import annotations

from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from torch import Tensor, nn

from selfdamage.adapters._head_sizes import predictor_dim
from selfdamage.adapters._loss_options import negative_cosine_similarity
from selfdamage.adapters.base import MomentumAdapter, PredictorAdapter
from selfdamage.adapters.heads import lightly_head
from selfdamage.adapters.registry import register_adapter

__all__ = ["BYOLAdapter"]


@register_adapter("byol")
class BYOLAdapter(PredictorAdapter, MomentumAdapter):
    """BYOL [1] with a self-damaged twin on the online side; ``forward`` returns the loss.

    Of BYOL's two online passes, one goes through the dense network and one through the
    pruned twin; targets come from the dense momentum network, without gradient::

        p0 = predictor(projector(dense(x0)))
        p1 = predictor_twin(projector_twin(twin(x1)))
        t0, t1 = momentum_encoder(x0), momentum_encoder(x1)   # backbone + projector
        loss = (NegCos(p0, t1) + NegCos(p1, t0)) / 2

    The projector *and* the predictor get twin BatchNorm state. The momentum network
    copies the dense backbone and projector (no predictor, as in BYOL).
    ``baseline=True`` gives BYOL as in lightly's example, with the same heads and loss.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] BYOL, 2020, https://arxiv.org/abs/2006.07733

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: The projection head (BYOL's projector). Defaults to lightly's
            ``BYOLProjectionHead(feature_dim, 4096, 256)``, the BYOL paper's sizes (hidden
            width 4096). lightly's ``examples/pytorch/byol.py`` uses a narrower hidden
            layer, ``BYOLProjectionHead(512, 1024, 256)``; pass
            ``head=BYOLProjectionHead(feature_dim, 1024, 256)`` to match it.
        predictor: The prediction head. Defaults to lightly's
            ``BYOLPredictionHead(D, 4096, D)``, where ``D`` is the ``out_features`` of the
            projector's last ``nn.Linear`` (256 by default): the BYOL paper's sizes.
            lightly's ``examples/pytorch/byol.py`` uses hidden width 1024.
        loss: The loss, called as ``loss(predictions, targets)`` on ``(N, D)`` tensors.
            Defaults to lightly's ``NegativeCosineSimilarity()``.

    Examples:
        >>> import torch, torchvision
        >>> backbone = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        >>> model = BYOLAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> model.update_momentum(0.99)  # every step, before the forward pass
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> -1.0 <= loss.item() <= 1.0
        True
    """

    default_head = lightly_head(BYOLProjectionHead, 4096, 256)

    @staticmethod
    def default_predictor(head: nn.Module, feature_dim: int) -> nn.Module:
        """lightly's ``BYOLPredictionHead(D, 4096, D)``, ``D`` the head's output dimension."""
        head_dim = predictor_dim(head, "BYOLPredictionHead(D, 4096, D)")
        module: nn.Module = BYOLPredictionHead(head_dim, 4096, head_dim)
        return module

    default_loss = staticmethod(negative_cosine_similarity)

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The symmetric loss of one step: ``x0`` dense, ``x1`` through the twin."""
        p0, p1 = self._online(x0, x1)
        t0, t1 = self._targets(x0, x1)
        loss: Tensor = (self.loss(p0, t1) + self.loss(p1, t0)) / 2
        return loss
