"""Per-sample two-view contrastive losses, from the forward pass the mean loss already uses.

BCL [0] keeps a moving average of every sample's contrastive loss, so it needs one loss
per sample, not the batch mean that lightly's losses return. The functions here compute,
for a batch of ``N`` samples with embeddings ``z0`` and ``z1`` of their two views, a
tensor of ``N`` losses whose mean equals lightly's loss on the same embeddings:

- :func:`ntxent_per_sample` — lightly's ``NTXentLoss`` without a memory bank (SimCLR,
  SDCLR): the mean over its ``2N`` anchors.
- :func:`dcl_per_sample` — lightly's ``DCLLoss`` and ``DCLWLoss`` (pass the loss's
  ``weight_fn``).
- :func:`per_sample_loss` — either, read off a lightly loss module (its temperature,
  weighting and ``gather_distributed``).

A sample's loss is the mean of the losses of its two anchors (view 0 against all views,
view 1 against all views), as the authors' ``losses/nt_xent.py: nt_xent(...,
average=False)`` returns it (``loss.view(2, batch_size).mean(0)``). Nothing is computed
twice: the per-sample losses are the terms of the mean, so ``losses.mean()`` is the
loss to back-propagate and ``losses.detach()`` the values for
:class:`~selfdamage.longtail.momentum_loss.MomentumLoss`.

- [0] BCL, Zhou et al., Contrastive Learning with Boosted Memorization, ICML 2022,
  https://arxiv.org/abs/2205.12693
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from lightly.loss import DCLLoss, NTXentLoss
from lightly.utils import dist
from torch import Tensor, nn

from selfdamage._checks import check_real

__all__ = ["dcl_per_sample", "ntxent_per_sample", "per_sample_loss"]

WeightFn = Callable[[Tensor, Tensor], Tensor]


def ntxent_per_sample(
    z0: Tensor, z1: Tensor, temperature: float, *, gather_distributed: bool = False
) -> Tensor:
    """NT-Xent (SimCLR's InfoNCE) loss of every sample of a two-view batch.

    With ``u = normalize(z0)``, ``v = normalize(z1)`` and ``s(a, b) = a . b / temperature``,
    the anchor ``u_i`` has the loss ``-log(exp(s(u_i, v_i)) / (exp(s(u_i, v_i)) +
    sum_{j != i} exp(s(u_i, u_j)) + sum_{j != i} exp(s(u_i, v_j))))``, and ``v_i`` the
    same with ``u`` and ``v`` swapped. Sample ``i``'s loss is the mean of its two
    anchors' losses, as the authors' ``nt_xent(..., average=False)`` returns it; the mean
    over samples is lightly's ``NTXentLoss(temperature)`` (without a memory bank), the
    mean over the ``2N`` anchors.

    Args:
        z0: Embeddings of the first views, shape ``(N, D)``.
        z1: Embeddings of the second views, shape ``(N, D)``.
        temperature: Softmax temperature, ``> 0``.
        gather_distributed: Under DDP, use the other ranks' embeddings as negatives, as
            lightly's ``NTXentLoss(gather_distributed=True)`` does; the losses returned
            are those of this rank's samples.

    Returns:
        The loss of each sample, shape ``(N,)``.

    Raises:
        ValueError: If the shapes differ or are not 2-D, or the temperature is not
            positive.

    Examples:
        >>> z0, z1 = torch.randn(8, 16), torch.randn(8, 16)
        >>> losses = ntxent_per_sample(z0, z1, temperature=0.2)
        >>> losses.shape
        torch.Size([8])
        >>> bool(torch.isclose(losses.mean(), NTXentLoss(temperature=0.2)(z0, z1)))
        True
    """
    u, v, u_all, v_all, own = _prepare(z0, z1, temperature, gather_distributed)
    positive = (u * v).sum(dim=1) / temperature
    loss_u = _logsumexp_rows(u @ v_all.T, u @ u_all.T, own, temperature, keep_positive=True)
    loss_v = _logsumexp_rows(v @ u_all.T, v @ v_all.T, own, temperature, keep_positive=True)
    return 0.5 * ((loss_u - positive) + (loss_v - positive))


def dcl_per_sample(
    z0: Tensor,
    z1: Tensor,
    temperature: float,
    *,
    weight_fn: WeightFn | None = None,
    gather_distributed: bool = False,
) -> Tensor:
    """Decoupled contrastive (DCL, DCLW) loss of every sample of a two-view batch.

    As :func:`ntxent_per_sample`, but the positive is left out of the denominator, and
    its term is scaled by ``weight_fn(u, v)`` when one is given (DCLW: lightly's
    ``DCLWLoss`` passes ``negative_mises_fisher_weights`` with its ``sigma``). Anchor
    ``u_i``: ``-w_i s(u_i, v_i) + log(sum_{j != i} exp(s(u_i, u_j)) + sum_{j != i}
    exp(s(u_i, v_j)))``; anchor ``v_i`` the same with ``u`` and ``v`` swapped (and
    ``weight_fn(v, u)``). Sample ``i``'s loss is the mean of its two anchors' losses;
    the mean over samples is lightly's ``DCLLoss(temperature, weight_fn)``.

    Args:
        z0: Embeddings of the first views, shape ``(N, D)``.
        z1: Embeddings of the second views, shape ``(N, D)``.
        temperature: Softmax temperature, ``> 0``.
        weight_fn: Weight of each sample's positive term, called on the normalized
            embeddings; ``None`` for DCL.
        gather_distributed: Under DDP, use the other ranks' embeddings as negatives.

    Returns:
        The loss of each sample, shape ``(N,)``.

    Raises:
        ValueError: If the shapes differ or are not 2-D, or the temperature is not
            positive.

    Examples:
        >>> from lightly.loss import DCLLoss
        >>> z0, z1 = torch.randn(8, 16), torch.randn(8, 16)
        >>> losses = dcl_per_sample(z0, z1, temperature=0.1)
        >>> bool(torch.isclose(losses.mean(), DCLLoss(temperature=0.1)(z0, z1)))
        True
    """
    u, v, u_all, v_all, own = _prepare(z0, z1, temperature, gather_distributed)
    positive = (u * v).sum(dim=1) / temperature
    weight_u = 1.0 if weight_fn is None else weight_fn(u, v)
    weight_v = 1.0 if weight_fn is None else weight_fn(v, u)
    loss_u = _logsumexp_rows(u @ v_all.T, u @ u_all.T, own, temperature, keep_positive=False)
    loss_v = _logsumexp_rows(v @ u_all.T, v @ v_all.T, own, temperature, keep_positive=False)
    return 0.5 * ((loss_u - weight_u * positive) + (loss_v - weight_v * positive))


def per_sample_loss(criterion: nn.Module, z0: Tensor, z1: Tensor) -> Tensor:
    """The per-sample losses of a lightly loss module, whose mean is ``criterion(z0, z1)``.

    Reads the temperature, ``gather_distributed`` and (DCL) ``weight_fn`` off
    ``criterion`` and calls :func:`ntxent_per_sample` or :func:`dcl_per_sample`.

    Args:
        criterion: lightly's ``NTXentLoss`` (without memory bank), ``DCLLoss`` or
            ``DCLWLoss``.
        z0: Embeddings of the first views, shape ``(N, D)``.
        z1: Embeddings of the second views, shape ``(N, D)``.

    Returns:
        The loss of each sample, shape ``(N,)``.

    Raises:
        TypeError: If ``criterion`` is another loss.
        ValueError: If ``criterion`` is an ``NTXentLoss`` with a memory bank (its
            negatives are not the batch's).

    Examples:
        >>> criterion = NTXentLoss(temperature=0.5)
        >>> z0, z1 = torch.randn(4, 8), torch.randn(4, 8)
        >>> per_sample_loss(criterion, z0, z1).shape
        torch.Size([4])
    """
    gather = bool(getattr(criterion, "gather_distributed", False))
    if isinstance(criterion, NTXentLoss):
        if criterion.memory_bank.size[0] != 0:
            raise ValueError(
                "criterion must be an NTXentLoss without memory bank for per-sample losses, "
                f"got memory_bank_size={criterion.memory_bank.size[0]}; a memory bank's "
                "negatives change from step to step. Use NTXentLoss(memory_bank_size=0)."
            )
        return ntxent_per_sample(z0, z1, criterion.temperature, gather_distributed=gather)
    if isinstance(criterion, DCLLoss):
        return dcl_per_sample(
            z0,
            z1,
            criterion.temperature,
            weight_fn=criterion.weight_fn,
            gather_distributed=gather,
        )
    raise TypeError(
        "criterion must be lightly's NTXentLoss, DCLLoss or DCLWLoss for per-sample losses, "
        f"got criterion={type(criterion).__name__}."
    )


def _prepare(
    z0: Tensor, z1: Tensor, temperature: float, gather_distributed: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Normalized views, all ranks' views (or the same) and the mask of each anchor's self."""
    if z0.dim() != 2 or z0.shape != z1.shape:
        raise ValueError(
            "z0 and z1 must both have shape (N, D), got "
            f"z0 of shape {tuple(z0.shape)} and z1 of shape {tuple(z1.shape)}."
        )
    check_real("temperature", temperature, 0, None, low_open=True)
    u, v = F.normalize(z0, dim=1), F.normalize(z1, dim=1)
    if gather_distributed and dist.world_size() > 1:
        u_all, v_all = torch.cat(dist.gather(u), 0), torch.cat(dist.gather(v), 0)
        own = dist.eye_rank(len(u), device=u.device)
    else:
        u_all, v_all = u, v
        own = torch.eye(len(u), device=u.device, dtype=torch.bool)
    return u, v, u_all, v_all, own


def _logsumexp_rows(
    cross: Tensor, same: Tensor, own: Tensor, temperature: float, *, keep_positive: bool
) -> Tensor:
    """``log sum exp`` over an anchor's row: the other view's column ``own`` (its positive)
    only if ``keep_positive``, and the same view without the anchor itself."""
    same = same.masked_fill(own, float("-inf"))
    if not keep_positive:
        cross = cross.masked_fill(own, float("-inf"))
    return torch.logsumexp(torch.cat([cross, same], dim=1) / temperature, dim=1)
