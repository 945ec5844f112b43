"""SDCLR on lightly's NNCLR: nearest neighbours from a support set as positives."""

from __future__ import annotations

from lightly.loss import NTXentLoss
from lightly.models.modules import (
    NNCLRPredictionHead,
    NNCLRProjectionHead,
    NNMemoryBankModule,
)
from torch import Tensor, nn

from selfdamage._checks import check_bool, check_int
from selfdamage.adapters._head_sizes import head_output_dim
from selfdamage.adapters._loss_options import default_temperature, memory_bank
from selfdamage.adapters.base import PredictorAdapter
from selfdamage.adapters.encoder import Encoder
from selfdamage.adapters.heads import lightly_head
from selfdamage.adapters.registry import register_adapter

__all__ = ["NNCLRAdapter"]


@register_adapter("nnclr")
class NNCLRAdapter(PredictorAdapter):
    """NNCLR [1] with a self-damaged twin (SDCLR [0]); ``forward`` returns the loss.

    Each projection ``z`` is replaced by its nearest neighbour in a support set of past
    projections and contrasted, with NT-Xent, against the other pass's prediction ``p``::

        z0, p0 = dense(x0)                 # projection head, then prediction head
        z1, p1 = twin(x1)
        loss = (NTXent(NN(z0), p1) + NTXent(NN(z1), p0)) / 2

    Both look-ups use the support set as it was before the step; then the dense ``z0`` are
    enqueued, the twin's only query it (see :doc:`/methods`). ``z`` is detached, as in
    lightly. The support set is ``self.memory_bank`` (lightly's ``NNMemoryBankModule``, in
    the ``state_dict``); evaluating the loss under ``torch.no_grad()`` enqueues nothing.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] NNCLR, 2021, https://arxiv.org/abs/2104.14548

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: Defaults to ``NNCLRProjectionHead(feature_dim, feature_dim, 128)``, lightly's.
        predictor: Defaults to lightly's ``NNCLRPredictionHead(D, feature_dim, D)``, ``D``
            the ``out_features`` of the head's last ``nn.Linear``, as lightly's example.
        loss: Called as ``loss(neighbours, predictions)`` on ``(N, D)`` tensors, without a
            memory bank of its own. Defaults to ``NTXentLoss(temperature)``.
        temperature: Of the default loss, a float only without ``loss``. Defaults to 0.1,
            the NNCLR paper's (lightly's example: 0.5). Or a schedule: see
            :class:`~selfdamage.adapters.TwoViewAdapter`.
        memory_bank_size: Projections in the support set, also with ``loss``. Defaults to
            4096, as lightly's example. Keep it well below the number of training samples,
            or the support set holds a sample's own projection from the previous epoch.
        gather_distributed: Under DDP, enqueue the dense projections of all ranks; pass it
            with a loss that gathers too, ``NTXentLoss(gather_distributed=True)``.

    Raises:
        ValueError: Also if ``temperature`` is not positive or is given with ``loss``,
            ``loss`` has a memory bank, ``memory_bank_size`` is not positive, or the head's
            output dimension cannot be read.

    Examples:
        >>> import torch, torchvision
        >>> backbone = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        >>> model = NNCLRAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> int(model.memory_bank.bank_ptr)  # N dense projections enqueued
        4
    """

    memory_bank: NNMemoryBankModule

    default_head = lightly_head(NNCLRProjectionHead, None, 128)

    @staticmethod
    def default_predictor(head: nn.Module, feature_dim: int) -> NNCLRPredictionHead:
        """lightly's ``NNCLRPredictionHead(D, feature_dim, D)``, ``D`` the head's output size."""
        head_dim = _projection_dim(head)
        return NNCLRPredictionHead(head_dim, feature_dim, head_dim)

    @staticmethod
    def default_loss(head: nn.Module, temperature: float | None = None) -> NTXentLoss:
        """``NTXentLoss(temperature)``, by default at 0.1 (the NNCLR paper's)."""
        return NTXentLoss(temperature=default_temperature(temperature, 0.1))

    def method_modules(
        self,
        encoder: Encoder,
        *,
        default_head: bool,
        memory_bank_size: int = 4096,
        gather_distributed: bool = False,
    ) -> dict[str, nn.Module]:
        """The support set, ``memory_bank``: lightly's ``NNMemoryBankModule`` of the dense
        projections, ``memory_bank_size`` of them."""
        check_bool("gather_distributed", gather_distributed)
        what, fix = "a positive number", "NNCLR needs a support set; lightly's example uses 4096."
        size = check_int("memory_bank_size", memory_bank_size, 1, what=what, fix=fix)
        bank = NNMemoryBankModule(size=(size, _projection_dim(encoder.head)))
        bank.gather_distributed = gather_distributed
        return {"memory_bank": bank}

    def check_loss(self, loss: nn.Module, head: nn.Module) -> None:
        """Raises if ``loss`` has a memory bank: the support set is the adapter's own."""
        if memory_bank(loss) is not None:
            raise ValueError(
                "loss has a memory bank, but NNCLR's negatives are the batch's: its "
                "support set is the adapter's own (memory_bank_size=). Use a loss "
                "without one (e.g. NTXentLoss(memory_bank_size=0))."
            )

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The symmetric loss of one step (``x0`` dense, ``x1`` through the twin); enqueues
        the dense projections ``z0``."""
        (z0, p0), (z1, p1) = self._online(x0, x1, with_projection=True)
        nn1 = self.memory_bank(z1.detach(), update=False)
        nn0 = self.memory_bank(z0.detach(), update=p0.requires_grad)  # pre-step bank too
        loss: Tensor = (self.loss(nn0, p1) + self.loss(nn1, p0)) / 2
        return loss


def _projection_dim(head: nn.Module) -> int:
    """The head's output size, which sizes the support set and the default predictor."""
    return head_output_dim(head, "size the support set")
