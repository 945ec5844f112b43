"""Global channel selection: which channels of several groups the twin loses. Pure maths.

Functions on score tensors only; no module, no torch-pruning. How this differs from
torch-pruning's ``MetaPruner(global_pruning=True)`` and why: :doc:`/architecture`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from selfdamage._checks import check_real
from selfdamage.damage.masks import num_to_prune

__all__ = ["DEFAULT_MAX_CHANNEL_RATIO", "global_channel_masks"]

DEFAULT_MAX_CHANNEL_RATIO = 0.9
"""Default cap on the fraction of one group's channels the twin may lose."""


def global_channel_masks(
    scores: Sequence[Tensor],
    prune_ratio: float,
    *,
    max_channel_ratio: float = DEFAULT_MAX_CHANNEL_RATIO,
    random_ratio: float = 0.0,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Global channel selection over several groups, with a per-group cap.

    ``round(prune_ratio * n)`` of the ``n`` channels of all groups together are pruned, of
    which ``round(random_ratio * n)`` (at most that total) uniformly at random: first the
    ``round(prune_ratio * n) - round(random_ratio * n)`` with the lowest scores, then the
    random ones among the channels still kept. No group loses more than
    ``floor(max_channel_ratio * size)`` channels, and every group keeps at least one.
    Ties are broken by the channel's relative position ``(i + 0.5) / size`` in its group,
    then by group order, so the result is deterministic and all-equal scores prune every
    group by about ``prune_ratio``.

    Args:
        scores: One 1-d tensor of per-channel scores per group, shape ``(size_g,)``;
            lower scores are pruned first. NaN counts as 0.
        prune_ratio: Fraction of all channels to prune, in ``[0, 1)``.
        max_channel_ratio: Most any one group may lose, in ``(0, 1]``.
        random_ratio: Fraction of all channels pruned at random instead of by score,
            in ``[0, prune_ratio]``; part of ``prune_ratio``, not added to it.
        generator: Random generator (CPU) for the random part. Pass a seeded one for
            masks that agree across processes.

    Returns:
        One ``bool`` tensor per group, on the CPU, ``True`` where the channel is kept.

    Raises:
        ValueError: If a ratio is out of range, ``scores`` is empty or not 1-d, or the
            cap makes ``prune_ratio`` unreachable.

    Examples:
        >>> keep = global_channel_masks(
        ...     [torch.tensor([3.0, 1.0, 2.0, 4.0]), torch.tensor([0.5, 5.0])], 0.5
        ... )
        >>> [k.tolist() for k in keep]
        [[True, False, False, True], [False, True]]
        >>> [k.tolist() for k in global_channel_masks([torch.ones(4), torch.ones(2)], 0.5)]
        [[False, False, True, True], [False, True]]
    """
    prune_ratio = check_real("prune_ratio", prune_ratio, 0.0, 1.0, high_open=True)
    max_channel_ratio = check_ratio_cap(max_channel_ratio)
    random_ratio = check_real(
        "random_ratio", random_ratio, 0.0, prune_ratio, high_name="prune_ratio"
    )
    if len(scores) == 0:
        raise ValueError("scores is empty: there are no channel groups to prune.")
    if any(s.dim() != 1 or s.numel() == 0 for s in scores):
        shapes = [tuple(s.shape) for s in scores]
        raise ValueError(f"every score tensor must be 1-d and non-empty, got shapes {shapes}.")
    sizes = [s.numel() for s in scores]
    total = sum(sizes)
    caps = torch.tensor([_cap(n, max_channel_ratio) for n in sizes])
    n_prune = num_to_prune(total, prune_ratio)
    if n_prune > int(caps.sum()):
        raise ValueError(
            f"prune_ratio={prune_ratio} asks for {n_prune} of {total} channels, but "
            f"max_channel_ratio={max_channel_ratio} (and keeping one channel per group) "
            f"allows at most {int(caps.sum())} ({int(caps.sum()) / total:.3f}). Lower "
            "prune_ratio or raise max_channel_ratio."
        )
    n_random = min(num_to_prune(total, random_ratio), n_prune)
    group_id = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    position = torch.cat([(torch.arange(n, dtype=torch.float64) + 0.5) / n for n in sizes])
    flat = torch.cat([s.detach().reshape(-1).to("cpu", torch.float64) for s in scores])
    flat = torch.nan_to_num(flat, nan=0.0)
    pruned = _capped_lowest(flat, position, group_id, caps, n_prune - n_random)
    if n_random > 0:
        draws = torch.rand(total, generator=generator, dtype=torch.float64)
        draws[pruned] = math.inf
        left = caps - torch.bincount(group_id[pruned], minlength=len(sizes))
        pruned |= _capped_lowest(draws, position, group_id, left, n_random)
    return list((~pruned).split(sizes))


def check_ratio_cap(max_channel_ratio: object) -> float:
    """``max_channel_ratio`` as a float in ``(0, 1]``; raises otherwise."""
    return check_real("max_channel_ratio", max_channel_ratio, 0.0, 1.0, low_open=True)


def _cap(size: int, max_channel_ratio: float) -> int:
    """Most channels a group of ``size`` may lose: the ratio's floor, and one kept."""
    return max(0, min(math.floor(max_channel_ratio * size + 1e-9), size - 1))


def _capped_lowest(
    scores: Tensor, position: Tensor, group_id: Tensor, caps: Tensor, k: int
) -> Tensor:
    """Marks the ``k`` lowest scores, skipping a group's channels once it reached its cap.

    Greedy in ascending order of ``(score, position, index)``: a channel is skipped exactly
    when its rank among its own group's channels in that order is at least the group's
    cap, so the greedy pick is computed without a Python loop over channels.
    """
    marked = torch.zeros(scores.numel(), dtype=torch.bool)
    if k <= 0:
        return marked
    by_position = torch.argsort(position, stable=True)
    order = by_position[torch.argsort(scores[by_position], stable=True)]
    groups = group_id[order]
    # Rank of each channel among its group's channels, in the sorted order.
    by_group = torch.argsort(groups, stable=True)
    counts = torch.bincount(groups, minlength=caps.numel())
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(groups)
    rank[by_group] = torch.arange(groups.numel()) - starts[groups[by_group]]
    eligible = order[rank < caps[groups]]
    marked[eligible[:k]] = True
    return marked
