"""SDCLR on lightly's SimSiam: a predictor, stop-gradient targets, no momentum network."""

from __future__ import annotations

from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from torch import Tensor, nn

from selfdamage.adapters._head_sizes import predictor_dim
from selfdamage.adapters._loss_options import negative_cosine_similarity
from selfdamage.adapters.base import PredictorAdapter
from selfdamage.adapters.heads import lightly_head
from selfdamage.adapters.registry import register_adapter

__all__ = ["SimSiamAdapter"]


@register_adapter("simsiam")
class SimSiamAdapter(PredictorAdapter):
    """SimSiam [1] with a self-damaged twin; ``forward`` returns the loss of one step::

        z0, p0 = projector(dense(x0)), predictor(z0)
        z1, p1 = projector_twin(twin(x1)), predictor_twin(z1)
        loss = (NegCos(p0, z1.detach()) + NegCos(p1, z0.detach())) / 2  # no extra pass

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] SimSiam, 2021, https://arxiv.org/abs/2011.10566

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: The projector; default ``SimSiamProjectionHead(feature_dim, feature_dim, 128)``,
            lightly's example's sizes (the paper: 2048-d on ImageNet).
        predictor: Default ``SimSiamPredictionHead(D, D // 2, D)``, ``D`` the projector's
            output size (128 by default): lightly's example.
        loss: ``loss(predictions, targets)`` on ``(N, D)``; default ``NegativeCosineSimilarity()``.

    Examples:
        >>> import torch, torchvision
        >>> backbone = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        >>> model = SimSiamAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))  # dense, twin
        >>> -1.0 <= loss.item() <= 1.0
        True
    """

    default_head = lightly_head(SimSiamProjectionHead, None, 128)

    @staticmethod
    def default_predictor(head: nn.Module, feature_dim: int) -> SimSiamPredictionHead:
        """lightly's ``SimSiamPredictionHead(D, D // 2, D)``, ``D`` the head's output size."""
        head_dim = predictor_dim(head, "SimSiamPredictionHead(D, D // 2, D)")
        return SimSiamPredictionHead(head_dim, max(1, head_dim // 2), head_dim)

    default_loss = staticmethod(negative_cosine_similarity)

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The symmetric loss of one step: ``x0`` dense, ``x1`` through the twin."""
        (z0, p0), (z1, p1) = self._online(x0, x1, with_projection=True)
        loss: Tensor = (self.loss(p0, z1.detach()) + self.loss(p1, z0.detach())) / 2
        return loss
