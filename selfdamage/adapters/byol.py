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
    """BYOL [1] with a self-damaged twin; ``forward`` returns the loss of one step::

        p0, p1 = predictor(projector(dense(x0))), predictor_twin(projector_twin(twin(x1)))
        t0, t1 = momentum_encoder(x0), momentum_encoder(x1)  # dense backbone + projector
        loss = (NegCos(p0, t1) + NegCos(p1, t0)) / 2          # targets without gradient

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] BYOL, 2020, https://arxiv.org/abs/2006.07733

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: The projector; default ``BYOLProjectionHead(feature_dim, 4096, 256)``, the paper's
            sizes (lightly's example: hidden 1024 in both heads; pass heads to match).
        predictor: Default ``BYOLPredictionHead(D, 4096, D)``, ``D`` the projector's output size.
        loss: ``loss(predictions, targets)`` on ``(N, D)``; default ``NegativeCosineSimilarity()``.

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
    def default_predictor(head: nn.Module, feature_dim: int) -> BYOLPredictionHead:
        """lightly's ``BYOLPredictionHead(D, 4096, D)``, ``D`` the head's output dimension."""
        head_dim = predictor_dim(head, "BYOLPredictionHead(D, 4096, D)")
        return BYOLPredictionHead(head_dim, 4096, head_dim)

    default_loss = staticmethod(negative_cosine_similarity)

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The symmetric loss of one step: ``x0`` dense, ``x1`` through the twin."""
        p0, p1 = self._online(x0, x1)
        t0, t1 = self._targets(x0, x1)
        loss: Tensor = (self.loss(p0, t1) + self.loss(p1, t0)) / 2
        return loss
