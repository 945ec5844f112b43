"""SDCLR on lightly's DINO with two global crops: a student and a momentum teacher."""

from __future__ import annotations

import copy
import warnings
from typing import Any

from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from torch import Tensor, nn
from torch.nn.utils.weight_norm import WeightNorm

from selfdamage._checks import check_int
from selfdamage._modules import forward_pre_hooks
from selfdamage.adapters._head_sizes import head_output_dim, output_dim
from selfdamage.adapters.base import Encoder, MomentumAdapter
from selfdamage.adapters.registry import register_adapter

__all__ = ["DINOAdapter"]


@register_adapter("dino")
class DINOAdapter(MomentumAdapter):
    """DINO [1] on two global crops with a self-damaged twin; ``forward`` returns the loss::

        s0, s1 = head(dense(x0)), head_twin(twin(x1))  # student: the wrapped encoder
        t0, t1 = teacher(x0), teacher(x1)  # dense momentum backbone + teacher head, no gradient
        loss = DINOLoss([t0, t1], [s0, s1])  # pairs (t0, s1) and (t1, s0)

    The center (``loss.center``) is updated once per step from the teacher outputs only. The
    teacher head starts equal to the student head. ``copy.deepcopy`` the adapter, not its
    wrapped encoder. The head's weight-normalized last layer is never pruned (the twin shares
    it). No local crops; ``forward(x0, x1, epoch=...)`` and :meth:`cancel_last_layer_gradients`
    give lightly's teacher-temperature warm-up and last-layer freezing (:doc:`/methods`).

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] DINO, 2021, https://arxiv.org/abs/2104.14294

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: The student head; default ``DINOProjectionHead(feature_dim, 512, 64, 2048,
            freeze_last_layer=1)``, lightly's example's sizes (the paper: 2048, 256, 65536).
            A given head is deep-copied for the teacher.
        loss: Called as ``loss(teacher_outputs, student_outputs)`` on lists of two ``(N, D)``
            tensors (and ``epoch=epoch`` when ``forward`` gets one). Default lightly's example's
            ``DINOLoss(D, warmup_teacher_temp_epochs=5)``, ``D`` the head's output size; its
            warm-up goes from 0.04 to 0.04, so ``epoch`` matters only for another loss.

    Raises:
        ValueError: Also if the head's output dimension cannot be read for the default loss
            or differs from a ``DINOLoss``'s.

    Examples:
        >>> import torch, torchvision
        >>> from torch import nn
        >>> from lightly.utils.scheduler import cosine_schedule
        >>> resnet = torchvision.models.resnet18()
        >>> backbone = nn.Sequential(*list(resnet.children())[:-1])  # (N, 512, 1, 1)
        >>> model = DINOAdapter(backbone, feature_dim=512, prune_ratio=0.9)
        >>> optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
        >>> epochs, x0, x1 = 1, torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
        >>> for epoch in range(epochs):
        ...     model.refresh_mask()
        ...     model.update_momentum(cosine_schedule(epoch, epochs, 0.996, 1.0))
        ...     loss = model(x0, x1, epoch=epoch)
        ...     loss.backward()
        ...     model.cancel_last_layer_gradients(epoch)  # frozen in epoch 0
        ...     optimizer.step()
        ...     optimizer.zero_grad()
        >>> model.loss.center.shape  # the teacher outputs' running mean, in the state_dict
        torch.Size([1, 1, 2048])
    """

    @staticmethod
    def default_head(feature_dim: int) -> DINOProjectionHead:
        """lightly's ``DINOProjectionHead(feature_dim, 512, 64, 2048, freeze_last_layer=1)``;
        torch's ``weight_norm`` deprecation ``FutureWarning`` is silenced (not actionable)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.nn.utils.weight_norm` is deprecated")
            return DINOProjectionHead(feature_dim, 512, 64, 2048, freeze_last_layer=1)

    @staticmethod
    def default_loss(head: nn.Module) -> DINOLoss:
        """``DINOLoss(D, warmup_teacher_temp_epochs=5)``, ``D`` the head's output dimension."""
        fix = "Pass loss=DINOLoss(output_dim=D) with D the head's output dimension."
        return DINOLoss(
            head_output_dim(head, "build the default loss", fix), warmup_teacher_temp_epochs=5
        )

    def check_loss(self, loss: nn.Module, head: nn.Module) -> None:
        """Raises if a ``DINOLoss`` centers outputs of another size than the head's."""
        head_dim = output_dim(head)
        if isinstance(loss, DINOLoss) and head_dim not in (None, loss.center.shape[-1]):
            raise ValueError(
                f"loss centers {loss.center.shape[-1]}-d outputs but the head outputs "
                f"{head_dim}-d ones. Build the loss with DINOLoss(output_dim={head_dim})."
            )

    def momentum_head(self, encoder: Encoder, *, default_head: bool) -> nn.Module:
        """The teacher head, with the student head's weights: the default head built anew and
        loaded, a given head deep-copied once its computed weights are detached."""
        if not default_head:
            _detach_computed_weights(encoder.head)
            return copy.deepcopy(encoder.head)
        teacher: nn.Module = self.default_head(encoder.feature_dim)
        teacher.load_state_dict(encoder.head.state_dict())
        return teacher

    def forward(self, x0: Tensor, x1: Tensor, *, epoch: int | None = None) -> Tensor:
        """The DINO loss of one step; updates the center from the teacher outputs.

        Args:
            x0: First global crops, shape ``(N, ...)``: through the dense student.
            x1: Second global crops of the same samples, same shape: through the twin.
            epoch: The current epoch, for the loss's teacher-temperature warm-up; None
                for its final teacher temperature.

        Returns:
            The loss, a scalar tensor.

        Raises:
            TypeError: If ``epoch`` is not an int.
            ValueError: If ``epoch`` is negative or the views fail :meth:`check_views`.
        """
        if epoch is not None:
            epoch = check_int("epoch", epoch, 0, fix="Pass the 0-based epoch, or None.")
        s0, s1 = self._online(x0, x1)
        t0, t1 = self._targets(x0, x1)
        options = {} if epoch is None else {"epoch": epoch}
        loss: Tensor = self.loss([t0, t1], [s0, s1], **options)
        return loss

    def cancel_last_layer_gradients(self, epoch: int) -> None:
        """Drops the gradients of the student head's last layer while it is frozen.

        lightly's ``DINOProjectionHead.cancel_last_layer_gradients``; call it after ``backward``,
        before the optimizer step. The layer stays fixed in the first ``head.freeze_last_layer``
        epochs (1 by default, lightly's example) for both branches, which share it; the
        teacher's copy follows by momentum only.

        Args:
            epoch: The current epoch, from 0.

        Raises:
            TypeError: If ``epoch`` is not an int, or the head is not a DINOProjectionHead.
            ValueError: If ``epoch`` is negative.
        """
        epoch = check_int("epoch", epoch, 0, fix="Pass the 0-based epoch.")
        head = self._encoder.head
        if not isinstance(head, DINOProjectionHead):
            raise TypeError(
                f"cancel_last_layer_gradients needs a DINOProjectionHead, but the head is a "
                f"{type(head).__name__}. Drop the gradients of your head's last layer "
                "yourself (param.grad = None), or do not freeze it."
            )
        head.cancel_last_layer_gradients(current_epoch=epoch)

    def __deepcopy__(self, memo: dict[int, Any]) -> DINOAdapter:
        """A deep copy; first detaches the weights that weight normalization computed."""
        _detach_computed_weights(self)
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__setstate__(copy.deepcopy(self.__dict__, memo))
        return clone


def _detach_computed_weights(module: nn.Module) -> None:
    """Replaces each weight that ``torch.nn.utils.weight_norm`` computed by its detached value.

    It is recomputed before every pass (one in progress keeps its reference): results do not
    change, and the module becomes deep-copyable."""
    for submodule in module.modules():
        for hook in forward_pre_hooks(submodule):
            if isinstance(hook, WeightNorm):
                setattr(submodule, hook.name, getattr(submodule, hook.name).detach())
