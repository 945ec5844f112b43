"""BCL's momentum loss: each sample's contrastive loss, averaged across epochs.

Boosted contrastive learning (BCL) [0] uses how well the network has memorized each
sample as a label-free signal of the tail: samples of rare classes keep a high loss for
longer. :class:`MomentumLoss` keeps, for every dataset index, the exponential moving
average of the sample's loss across epochs (the *momentum loss*) and its normalized
value in ``[0, 1]`` (the authors' *momentum weight*), which
:class:`~selfdamage.longtail.boosted_augment.MomentumBoostedDataset` turns into the
strength of the sample's augmentation.

Per step, :meth:`MomentumLoss.update` records the batch's per-sample losses (from
:mod:`selfdamage.longtail.per_sample`) on their device, without a host sync; at the end
of each epoch, :meth:`MomentumLoss.step` applies the moving average and normalizes.

- [0] BCL, Zhou et al., Contrastive Learning with Boosted Memorization, ICML 2022,
  https://arxiv.org/abs/2205.12693
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

from selfdamage._checks import check_int, check_real

__all__ = ["MomentumLoss", "normalize_momentum_loss"]


def normalize_momentum_loss(momentum_loss: Tensor) -> Tensor:
    """The authors' momentum weight: momentum losses standardized, then mapped to ``[0, 1]``.

    ``z = (m - mean(m)) / std(m)``, then ``z / max|z| / 2 + 1/2``, over all samples. The
    standard deviation cancels, so this computes ``(m - mean(m)) / max|m - mean(m)| / 2 +
    1/2``, which equals the authors' value up to rounding and gives ``0.5`` for every
    sample (rather than NaN) when all momentum losses are equal.

    Args:
        momentum_loss: One momentum loss per sample, shape ``(N,)``.

    Returns:
        The normalized values, shape ``(N,)``: ``0.5`` at the mean; the sample
        farthest from the mean gets ``1`` (above it) or ``0`` (below it).

    Examples:
        >>> normalize_momentum_loss(torch.tensor([1.0, 2.0, 3.0, 6.0]))
        tensor([0.1667, 0.3333, 0.5000, 1.0000])
    """
    centered = momentum_loss - momentum_loss.mean()
    spread = centered.abs().max().clamp_min(torch.finfo(centered.dtype).tiny)
    return centered / spread / 2 + 0.5


class MomentumLoss(nn.Module):
    """Per-sample momentum loss and its normalized score, kept by dataset index.

    Follows the authors' ``train.py``/``train_sdclr.py`` (``train``, ``train_prune``) and
    ``data/memoboosted_cifar100.py`` (``calculate_momentum_weight``):

    - In the first epoch a sample's momentum loss is its loss; afterwards it is
      ``(1 - momentum) * loss + momentum * previous``, with ``momentum = 0.97``.
    - After each epoch the momentum losses of all samples are normalized by
      :func:`normalize_momentum_loss` into ``scores``.
    - Before that (``warmup_epochs``, the first epoch in the authors' code) every score
      is ``0``: the weakest augmentation.

    Where we differ: a sample not drawn in an epoch (``drop_last``, a sampler) keeps its
    momentum loss, and that enters the normalization; in the authors' code its entry of
    that epoch's row is ``0``. They agree whenever every sample is drawn every epoch, as
    with their loader. ``warmup_epochs > 1`` is ours (their warm-up is one epoch).

    Under DDP (``torch.distributed`` initialized, world size > 1), :meth:`update`
    gathers the indices and losses of all ranks, so every rank holds the same state;
    every rank must pass batches of equal size (``DistributedSampler`` does).

    All state is in buffers (``state_dict``): a run resumed from a checkpoint, even in
    the middle of an epoch, continues identically.

    - [0] BCL, Zhou et al., Contrastive Learning with Boosted Memorization, ICML 2022,
      https://arxiv.org/abs/2205.12693

    Args:
        num_samples: Number of samples in the dataset; indices are ``0 .. num_samples-1``.
        momentum: Weight of the previous momentum loss, in ``[0, 1)``; the authors'
            ``--momentum_loss_beta`` default is 0.97.
        warmup_epochs: Epochs whose losses are recorded before the scores leave ``0``;
            at least 1 (the authors').

    Raises:
        ValueError: If an argument is out of range.
        TypeError: If an argument has the wrong type.

    Examples:
        >>> tracker = MomentumLoss(4)
        >>> tracker.update(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]))
        >>> tracker.update(torch.tensor([2, 3]), torch.tensor([3.0, 6.0]))
        >>> tracker.step()
        tensor([0.1667, 0.3333, 0.5000, 1.0000])
        >>> tracker.momentum_loss
        tensor([1., 2., 3., 6.])
    """

    momentum_loss: Tensor
    scores: Tensor
    epoch_loss: Tensor
    seen: Tensor
    epochs: Tensor

    def __init__(self, num_samples: int, *, momentum: float = 0.97, warmup_epochs: int = 1):
        super().__init__()
        self.num_samples = check_int("num_samples", num_samples, 1)
        self.momentum = check_real(
            "momentum", momentum, 0.0, 1.0, high_open=True, fix="BCL's default is 0.97."
        )
        self.warmup_epochs = check_int(
            "warmup_epochs", warmup_epochs, 1, fix="BCL's warm-up is 1 epoch."
        )
        self.register_buffer("momentum_loss", torch.zeros(num_samples))
        self.register_buffer("scores", torch.zeros(num_samples))
        self.register_buffer("epoch_loss", torch.zeros(num_samples))
        self.register_buffer("seen", torch.zeros(num_samples, dtype=torch.bool))
        self.register_buffer("epochs", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Records the losses of one step's samples (all ranks' under DDP).

        No host sync: the values are written on the buffers' device. A sample recorded
        twice in an epoch keeps its last loss (within one step, one of them).

        Args:
            indices: Dataset indices of the batch, shape ``(B,)``, integers in
                ``[0, num_samples)`` (a CPU tensor from the loader is fine).
            losses: Each sample's loss, shape ``(B,)``; detached here.

        Raises:
            ValueError: If the shapes are not ``(B,)`` and equal.
            TypeError: If ``indices`` is not an integer tensor (a boolean mask included).
        """
        if indices.dim() != 1 or losses.shape != indices.shape:
            raise ValueError(
                "indices and losses must both have shape (B,), one loss per dataset index, "
                f"got indices of shape {tuple(indices.shape)} and losses of shape "
                f"{tuple(losses.shape)}."
            )
        if indices.dtype == torch.bool:
            raise TypeError(
                "indices must be an integer tensor of dataset indices, got dtype torch.bool: "
                "a mask would be read as indices 0 and 1. Pass each sample's dataset index "
                "(from a mask: mask.nonzero().squeeze(1))."
            )
        if indices.dtype.is_floating_point or indices.dtype.is_complex:
            raise TypeError(
                f"indices must be an integer tensor of dataset indices, got dtype {indices.dtype}."
            )
        device = self.momentum_loss.device
        indices = indices.to(device=device, dtype=torch.int64, non_blocking=True)
        losses = losses.detach().to(device=device, dtype=self.epoch_loss.dtype)
        if torch_dist.is_available() and torch_dist.is_initialized():
            indices, losses = _gather(indices), _gather(losses)
        self.epoch_loss.index_copy_(0, indices, losses)
        self.seen.index_fill_(0, indices, True)

    @torch.no_grad()
    def step(self) -> Tensor:
        """Ends an epoch: moving average of the recorded losses, then new scores.

        Returns:
            ``scores``, the normalized momentum loss of every sample (``0`` until
            ``warmup_epochs`` epochs have ended), shape ``(num_samples,)``.
        """
        averaged = torch.where(
            self.epochs == 0,
            self.epoch_loss,
            (1.0 - self.momentum) * self.epoch_loss + self.momentum * self.momentum_loss,
        )
        self.momentum_loss.copy_(torch.where(self.seen, averaged, self.momentum_loss))
        self.seen.zero_()
        self.epochs += 1
        warm = self.epochs >= self.warmup_epochs
        normalized = normalize_momentum_loss(self.momentum_loss)
        self.scores.copy_(torch.where(warm, normalized, torch.zeros_like(normalized)))
        return self.scores

    def extra_repr(self) -> str:
        return (
            f"num_samples={self.num_samples}, momentum={self.momentum}, "
            f"warmup_epochs={self.warmup_epochs}"
        )


def _gather(tensor: Tensor) -> Tensor:
    """All ranks' ``tensor`` (equal shapes), concatenated in rank order."""
    world = torch_dist.get_world_size()
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    torch_dist.all_gather(parts, tensor)
    return torch.cat(parts)
