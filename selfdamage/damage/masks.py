"""Mask maths for self-damage: global unstructured magnitude pruning.

These are pure functions on tensors: they know nothing about modules, so they can be
used (and tested) without :class:`~selfdamage.SelfDamagingWrapper`.

A mask is a ``bool`` tensor with the shape of its weight: ``True`` keeps the weight,
``False`` prunes it. Masks are stored as ``bool`` (one byte per weight), never as float
copies of the weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from selfdamage._checks import check_real

__all__ = [
    "apply_mask",
    "global_magnitude_masks",
    "kth_smallest",
    "num_to_prune",
    "smallest_k_mask",
]


def apply_mask(tensor: Tensor, mask: Tensor) -> Tensor:
    """``tensor * mask``, differentiable in ``tensor``, faster for a ``bool`` mask on the CPU.

    The same result as ``tensor * mask`` (each entry kept or set to zero). For a ``bool``
    mask and a floating-point tensor the mask is read as ``uint8``: on the CPU, PyTorch
    converts a ``uint8`` operand to float with vectorized code but a ``bool`` one element
    by element, and the product runs once in each twin pass and once more in its backward
    (a ResNet-18's 11.2M weights: the conversion took 3.7 ms from ``bool``, 1.4 ms from
    ``uint8``, one thread). On a GPU both convert inside the multiply kernel. Any other
    mask or tensor dtype is multiplied as it is.

    Examples:
        >>> weight = torch.tensor([0.5, -2.0, 3.0], requires_grad=True)
        >>> apply_mask(weight, torch.tensor([True, False, True]))
        tensor([0.5000, -0.0000, 3.0000], grad_fn=<MulBackward0>)
    """
    if mask.dtype == torch.bool and tensor.is_floating_point():
        return tensor * mask.view(torch.uint8)
    return tensor * mask


def num_to_prune(numel: int, ratio: float) -> int:
    """Number of weights out of ``numel`` that a ratio prunes.

    Rounds to the nearest integer, so the realised sparsity is within half a weight of
    ``ratio``.

    Examples:
        >>> num_to_prune(1000, 0.9)
        900
    """
    return min(numel, math.floor(ratio * numel + 0.5))


def smallest_k_mask(scores: Tensor, k: int) -> Tensor:
    """Marks exactly the ``k`` smallest entries of a 1-d tensor.

    Runs in linear time on the tensor's device (no sort, no NumPy round trip). Ties at
    the threshold are broken by position: among equal scores the earliest entries are
    marked first, so the result is deterministic.

    Args:
        scores: 1-d tensor of scores, shape ``(n,)``.
        k: How many entries to mark, ``0 <= k <= n``.

    Returns:
        ``bool`` tensor of shape ``(n,)`` with exactly ``k`` ``True`` entries.

    Raises:
        ValueError: If ``scores`` is not 1-d or ``k`` is outside ``[0, n]``.

    Examples:
        >>> smallest_k_mask(torch.tensor([3.0, 1.0, 2.0, 1.0]), 2)
        tensor([False,  True, False,  True])
        >>> smallest_k_mask(torch.tensor([1.0, 1.0, 1.0]), 2)  # ties: earliest first
        tensor([ True,  True, False])
    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-d, got shape {tuple(scores.shape)}.")
    n = scores.numel()
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}] for {n} scores, got k={k}.")
    if k == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k == n:
        return torch.ones_like(scores, dtype=torch.bool)
    threshold = kth_smallest(scores, k)
    below = scores < threshold
    ties = scores == threshold
    needed = k - int(torch.count_nonzero(below))
    if needed == int(torch.count_nonzero(ties)):
        return below | ties
    # Fill up with entries equal to the threshold, earliest first.
    return below | (ties & (torch.cumsum(ties, dim=0) <= needed))


def kth_smallest(scores: Tensor, k: int, *, sample_size: int = 1 << 18) -> Tensor:
    """The ``k``-th smallest value (1-based) of a 1-d tensor, exactly.

    Equal to ``torch.kthvalue(scores, k).values``, but faster on large tensors: the
    value is first bracketed from a strided sample, then found exactly among the few
    entries inside the bracket. If the bracket misses (possible only for adversarial
    orderings), it falls back to ``torch.kthvalue`` on everything.

    Examples:
        >>> kth_smallest(torch.tensor([5.0, 1.0, 4.0, 2.0]), 2)
        tensor(2.)
    """
    n = scores.numel()
    if n <= 4 * sample_size:
        return torch.kthvalue(scores, k).values
    sample = scores[:: n // sample_size]
    m = sample.numel()
    q = k / n
    margin = 6.0 * math.sqrt(q * (1.0 - q) * m) + 16.0
    lo = torch.kthvalue(sample, max(1, int(q * m - margin))).values
    hi = torch.kthvalue(sample, min(m, int(q * m + margin) + 1)).values
    rank = k - int(torch.count_nonzero(scores < lo))
    band = scores[(scores >= lo) & (scores <= hi)]
    if 1 <= rank <= band.numel():
        return torch.kthvalue(band, rank).values
    return torch.kthvalue(scores, k).values


def global_magnitude_masks(
    weights: Sequence[Tensor],
    prune_ratio: float,
    *,
    random_ratio: float = 0.0,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Global unstructured magnitude pruning over several weight tensors at once.

    One threshold is taken over ``|w|`` of all ``n`` weights together (not per layer), as
    in SDCLR [0]. ``round(prune_ratio * n)`` weights are pruned in all, of which
    ``round(random_ratio * n)`` (at most that total) uniformly at random: first the
    ``round(prune_ratio * n) - round(random_ratio * n)`` with the smallest magnitude, then
    the random ones among the weights still kept (the reference code's
    ``random_prune_percent``). With ``n = 10``, ``prune_ratio=0.14`` and
    ``random_ratio=0.05``, one weight is pruned, at random. The masks are recomputed from
    scratch: nothing is carried over from an earlier call.

    All work happens on the weights' device, in the widest floating dtype of the weights
    and at least ``float32`` (``float64`` weights are compared in ``float64``, so weights
    that differ by less than ``float32`` resolution are still told apart).

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990

    Args:
        weights: Weight tensors of any shapes, on one device.
        prune_ratio: Fraction of all weights to prune, in ``[0, 1)``.
        random_ratio: Fraction of all weights pruned at random instead of by magnitude,
            in ``[0, prune_ratio]``; part of ``prune_ratio``, not added to it.
        generator: Random generator for the random part, on the weights' device. Pass a
            seeded one for masks that agree across processes.

    Returns:
        One ``bool`` mask per weight, same shape and device, ``True`` where kept.

    Raises:
        ValueError: If a ratio is out of range, ``weights`` is empty, or a weight holds
            NaN or infinite values.

    Examples:
        >>> w = [torch.tensor([0.1, -2.0, 0.3]), torch.tensor([[-0.05, 1.0]])]
        >>> global_magnitude_masks(w, prune_ratio=0.4)
        [tensor([False,  True,  True]), tensor([[False,  True]])]
    """
    prune_ratio = check_real("prune_ratio", prune_ratio, 0, 1, high_open=True)
    random_ratio = check_real("random_ratio", random_ratio, 0, prune_ratio, high_name="prune_ratio")
    if len(weights) == 0:
        raise ValueError("weights is empty: there is nothing to prune.")
    with torch.no_grad():
        # float32 at least (bf16 and fp16 weights), float64 for float64 weights.
        dtype = functools.reduce(torch.promote_types, [w.dtype for w in weights], torch.float32)
        flat = torch.cat([w.detach().reshape(-1).to(dtype) for w in weights])
        if not bool(torch.isfinite(flat).all()):
            raise ValueError(
                "weights contain NaN or infinite values; the pruning threshold is undefined. "
                "Check the training for divergence (learning rate, loss scaling)."
            )
        n = flat.numel()
        n_total = num_to_prune(n, prune_ratio)
        n_random = min(num_to_prune(n, random_ratio), n_total)
        pruned = smallest_k_mask(flat.abs(), n_total - n_random)
        if n_random > 0:
            # Uniform scores for the weights still kept; the n_random lowest are pruned.
            kept = (~pruned).nonzero().squeeze(1)
            scores = torch.rand(kept.numel(), device=flat.device, generator=generator)
            pruned[kept[smallest_k_mask(scores, n_random)]] = True
        keep = ~pruned
        return [m.view_as(w) for m, w in zip(keep.split([w.numel() for w in weights]), weights)]
