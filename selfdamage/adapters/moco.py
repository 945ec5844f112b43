"""SDCLR on lightly's MoCo (v2 style): a momentum key encoder and a memory bank."""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from torch import Tensor, nn

from selfdamage._checks import check_int
from selfdamage.adapters._head_sizes import head_output_dim, output_dim
from selfdamage.adapters._loss_options import default_temperature, memory_bank
from selfdamage.adapters.base import MomentumAdapter
from selfdamage.adapters.heads import lightly_head
from selfdamage.adapters.registry import register_adapter

__all__ = ["MoCoAdapter"]


@register_adapter("moco")
class MoCoAdapter(MomentumAdapter):
    """Symmetric MoCo v2 [1, 2] with a self-damaged twin; ``forward`` returns the loss.

    Both views are queries, one through the dense encoder and one through the pruned twin;
    keys come from the dense momentum encoder, without gradient::

        q0, q1 = head(dense(x0)), head_twin(twin(x1))
        k0, k1 = momentum_encoder(x0), momentum_encoder(x1)
        loss = (L(q0, k1) + L(q1, k0)) / 2

    The symmetric form (two query and two key passes per step), so ``baseline=True`` is
    symmetric MoCo, not lightly's example: see :doc:`/methods`. With a memory bank the
    halves are one call, ``L(cat(q0, q1), cat(k1, k0))``, against the bank as it was before
    the step, and the step's ``2N`` keys are enqueued once.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] MoCo, 2020, https://arxiv.org/abs/1911.05722
    - [2] MoCo v2, 2020, https://arxiv.org/abs/2003.04297

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: Defaults to lightly's ``MoCoProjectionHead(feature_dim, feature_dim, 128)``
            (MoCo v2's, no BatchNorm; lightly's example's sizes).
        loss: Called as ``loss(queries, keys)`` on ``(N, D)`` tensors; with a memory bank
            it must average a per-row term, as ``NTXentLoss`` does. Under DDP give it
            ``gather_distributed=True``. Defaults to ``NTXentLoss(temperature,
            memory_bank_size=(memory_bank_size, D))``, ``D`` the ``out_features`` of the
            head's last ``nn.Linear``.
        temperature: Of the default loss, a float only without ``loss``. Defaults to 0.2,
            MoCo v2's and SDCLR's (lightly's example: 0.5). Or a schedule: see
            :class:`~selfdamage.adapters.TwoViewAdapter`.
        memory_bank_size: Keys in the default loss's bank, only without ``loss``; 0 for
            none (in-batch negatives). Defaults to 4096, as lightly's example.

    Raises:
        ValueError: Also if ``temperature`` is not positive, ``temperature`` or
            ``memory_bank_size`` is given with ``loss``, ``memory_bank_size`` is negative,
            the bank's dimension differs from the head's output, or the head's output
            dimension cannot be read for the default bank.

    Examples:
        >>> import torch, torchvision
        >>> backbone = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        >>> model = MoCoAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> model.update_momentum(0.99)  # every step, before the forward pass
        >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
        >>> int(model.loss.memory_bank.bank_ptr)  # 2N keys enqueued, once
        8
    """

    default_head = lightly_head(MoCoProjectionHead, None, 128)

    @staticmethod
    def default_loss(
        head: nn.Module, temperature: float | None = None, memory_bank_size: int | None = None
    ) -> NTXentLoss:
        """``NTXentLoss(temperature, memory_bank_size=(memory_bank_size, D))``, 0.2 and 4096.

        ``D`` is the head's output dimension; ``memory_bank_size=0`` gives no bank.
        """
        size = 4096 if memory_bank_size is None else memory_bank_size
        size = check_int("memory_bank_size", size, 0, what="a number of keys >= 0 (0 for no bank)")
        bank_size: int | tuple[int, int] = 0
        if size > 0:
            fix = "Pass loss=NTXentLoss(memory_bank_size=(4096, output_dim)) or memory_bank_size=0."
            bank_size = (size, head_output_dim(head, "size the memory bank", fix))
        temperature = default_temperature(temperature, 0.2)
        return NTXentLoss(temperature=temperature, memory_bank_size=bank_size)

    def check_loss(self, loss: nn.Module, head: nn.Module) -> None:
        """Raises if the loss's memory bank holds keys of another size than the head's."""
        bank, head_dim = memory_bank(loss), output_dim(head)
        if bank is not None and head_dim is not None and bank.size[1] != head_dim:
            raise ValueError(
                f"loss has a memory bank of {bank.size[1]}-d keys but the head outputs "
                f"{head_dim}-d projections. Build the loss with "
                f"memory_bank_size=({bank.size[0]}, {head_dim})."
            )

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The symmetric loss of one step; enqueues the step's keys once if there is a bank.

        Raises:
            ValueError: If the projections' dimension differs from the memory bank's.
        """
        q0, q1 = self._online(x0, x1)
        k0, k1 = self._targets(x0, x1)
        bank = memory_bank(self.loss)
        if bank is None:
            halves: Tensor = (self.loss(q0, k1) + self.loss(q1, k0)) / 2
            return halves
        if q0.shape[1] != bank.size[1]:
            raise ValueError(
                f"The head outputs {q0.shape[1]}-d projections but the loss's memory bank "
                f"holds {bank.size[1]}-d keys; build the loss with "
                f"memory_bank_size=({bank.size[0]}, {q0.shape[1]})."
            )
        loss: Tensor = self.loss(torch.cat([q0, q1]), torch.cat([k1, k0]))
        return loss
