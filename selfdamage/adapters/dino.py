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

_HEAD_SIZES = (512, 64, 2048)
"""Hidden, bottleneck and output size of the default head: lightly's examples/pytorch/dino.py."""


@register_adapter("dino")
class DINOAdapter(MomentumAdapter):
    """DINO [1] on two global crops with a self-damaged student pass; ``forward`` returns the loss.

    The student is the wrapped encoder (backbone and DINO head); of its two passes, one
    is dense and one goes through the pruned twin. The teacher is the dense momentum
    network, without gradient::

        s0, s1 = head(dense(x0)), head_twin(twin(x1))
        t0, t1 = teacher(x0), teacher(x1)             # momentum backbone + teacher head
        loss = DINOLoss([t0, t1], [s0, s1])           # pairs (t0, s1) and (t1, s0)

    DINO's center (``loss.center``, in the ``state_dict``) is updated once per step from the
    *teacher* outputs only. The teacher head starts equal to the student head, as in the
    DINO authors' code (lightly's example leaves it at its own random initialization): the
    default one is built anew and loaded with the student's weights, a given one is
    deep-copied. lightly's head uses ``torch.nn.utils.weight_norm``, which keeps its
    computed weight as a plain attribute that ``copy.deepcopy`` refuses while it carries a
    graph; the adapter detaches it before copying, so ``copy.deepcopy(adapter)`` and
    :class:`~selfdamage.ChannelDamage`'s compact twin work (a bare deep copy of the wrapped
    encoder after a training forward raises torch's RuntimeError: copy the adapter).

    The head's weight-normalized last layer is not pruned: the default
    ``prunable=(nn.Conv2d,)`` leaves all of the head unpruned, and a ``prunable`` that
    selects ``nn.Linear`` skips it with a warning (masking a weight-normalized weight
    would not sparsify what the layer computes). The twin still uses it, shared.

    **Two global crops only.** DINO's local crops are not supported: SDCLR's rule (one of
    the *two* online passes through the twin) has no unique extension to ``2 + V`` student
    passes (all local crops through the twin, or split between dense and twin, is each a
    new method to be calibrated).

    Teacher-temperature warm-up: ``forward`` takes an optional ``epoch``, passed to the
    loss as lightly's example does; without it the loss uses its final temperature. The
    default loss (lightly's example: ``DINOLoss(D, warmup_teacher_temp_epochs=5)``)
    warms up from 0.04 to 0.04, so ``epoch`` changes nothing there; it matters for a
    loss built with another ``warmup_teacher_temp``. Freezing the last layer in the
    first epoch (lightly's ``freeze_last_layer=1``) is an explicit call after
    ``backward``: :meth:`cancel_last_layer_gradients`. The study's training loop calls
    ``model(x0, x1)`` and neither of them. ``baseline=True`` gives lightly's
    ``examples/pytorch/dino.py`` on its two global crops, with the same heads and loss.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990
    - [1] DINO, 2021, https://arxiv.org/abs/2104.14294

    Args:
        backbone, feature_dim, prune_ratio: As on every adapter (and ``**options``).
        head: The student head. Defaults to lightly's ``DINOProjectionHead(feature_dim,
            512, 64, 2048, freeze_last_layer=1)``, the sizes of lightly's
            ``examples/pytorch/dino.py`` (the DINO paper uses 2048, 256 and 65536). A
            given head is deep-copied for the teacher.
        loss: The loss, called as ``loss(teacher_outputs, student_outputs)`` on two lists
            of two ``(N, D)`` tensors (and ``epoch=epoch`` when ``forward`` gets one).
            Defaults to ``DINOLoss(D, warmup_teacher_temp_epochs=5)`` (lightly's example)
            with ``D`` the ``out_features`` of the head's last ``nn.Linear``.

    Raises:
        ValueError: Also if the head's output dimension cannot be read for
            the default loss or differs from a ``DINOLoss``'s.

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
    def default_head(feature_dim: int) -> nn.Module:
        """lightly's ``DINOProjectionHead(feature_dim, 512, 64, 2048, freeze_last_layer=1)``.

        torch's ``FutureWarning`` that ``torch.nn.utils.weight_norm`` (used by lightly's
        head) is deprecated is silenced: the user cannot act on it.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.nn.utils.weight_norm` is deprecated")
            module: nn.Module = DINOProjectionHead(feature_dim, *_HEAD_SIZES, freeze_last_layer=1)
            return module

    @staticmethod
    def default_loss(head: nn.Module) -> nn.Module:
        """``DINOLoss(D, warmup_teacher_temp_epochs=5)``, ``D`` the head's output dimension."""
        module: nn.Module = DINOLoss(
            head_output_dim(
                head,
                needed_for="build the default loss",
                fix="Pass loss=DINOLoss(output_dim=D) with D the head's output dimension.",
            ),
            warmup_teacher_temp_epochs=5,
        )
        return module

    def check_loss(self, loss: nn.Module, head: nn.Module) -> None:
        """Raises if a ``DINOLoss`` centers outputs of another size than the head's."""
        head_dim = output_dim(head)
        if isinstance(loss, DINOLoss) and head_dim not in (None, loss.center.shape[-1]):
            raise ValueError(
                f"loss centers {loss.center.shape[-1]}-d outputs but the head outputs "
                f"{head_dim}-d ones. Build the loss with DINOLoss(output_dim={head_dim})."
            )

    def momentum_head(self, encoder: Encoder, *, default_head: bool) -> nn.Module:
        """The teacher head, with the student head's weights.

        The default head is built anew and loaded with the student's weights; a given head
        is deep-copied once its computed weights are detached.
        """
        if not default_head:
            _detach_computed_weights(encoder.head)
            return copy.deepcopy(encoder.head)
        teacher = self.default_head(encoder.feature_dim)
        teacher.load_state_dict(encoder.head.state_dict())
        return teacher

    def forward(self, x0: Tensor, x1: Tensor, *, epoch: int | None = None) -> Tensor:
        """The DINO loss of one step; updates the center from the teacher outputs.

        Args:
            x0: First global crops, shape ``(N, ...)``: through the dense student.
            x1: Second global crops of the same samples, same shape: through the twin.
            epoch: The current epoch, for the loss's teacher-temperature warm-up; None
                for the loss's final teacher temperature.

        Returns:
            The loss, a scalar tensor.

        Raises:
            TypeError: If ``epoch`` is not an int.
            ValueError: If ``epoch`` is negative or the views do not pass
                :meth:`check_views`.
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

        lightly's ``DINOProjectionHead.cancel_last_layer_gradients``: the last layer stays
        fixed in the first ``head.freeze_last_layer`` epochs (1 by default, lightly's
        example; the teacher's copy of it only follows by momentum). Call it after
        ``backward`` and before the optimizer step. The layer is shared by the dense and
        the twin pass, so this drops both branches' gradients.

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

    The weight is recomputed before every forward pass, and a pass in progress keeps its
    own reference, so this changes no result; it makes the module deep-copyable.
    """
    for submodule in module.modules():
        for hook in forward_pre_hooks(submodule):
            if isinstance(hook, WeightNorm):
                setattr(submodule, hook.name, getattr(submodule, hook.name).detach())
