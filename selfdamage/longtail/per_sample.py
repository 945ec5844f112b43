"""Per-sample losses, from the loss call the step already makes: their mean is the loss.

BCL [0] keeps a moving average of every sample's contrastive loss, so it needs one loss
per sample, not the batch mean that lightly's losses return. For a batch of ``N``
samples, the functions here give ``N`` losses whose mean equals the loss:

- :func:`ntxent_per_sample` — lightly's ``NTXentLoss`` without a memory bank (SimCLR,
  SDCLR): the mean over its ``2N`` anchors; :func:`dcl_per_sample` — ``DCLLoss``,
  ``DCLWLoss``.
- :func:`per_sample_loss` — these, read off a loss module, and MoCo's queue, BYOL's and
  SimSiam's negative cosine, TiCo and DINO; :func:`why_no_per_sample` says why Barlow
  Twins and VICReg (batch statistics) have none.
- :func:`record_per_sample` — the per-sample losses of every loss call of a step, as the
  adapters' ``return_per_sample=True`` uses them.

A sample's NT-Xent loss is the mean of its two anchors' losses, as the authors'
``losses/nt_xent.py: nt_xent(..., average=False)`` returns it (``loss.view(2,
batch_size).mean(0)``). ``losses.mean()`` is the loss to back-propagate and
``losses.detach()`` the values for :class:`~selfdamage.longtail.momentum_loss.MomentumLoss`.

- [0] BCL, Zhou et al., Contrastive Learning with Boosted Memorization, ICML 2022,
  https://arxiv.org/abs/2205.12693
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Callable, TypeVar, cast

import torch
import torch.nn.functional as F
from lightly.loss import (
    BarlowTwinsLoss,
    DCLLoss,
    DINOLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    TiCoLoss,
    VICRegLoss,
)
from lightly.utils import dist
from torch import Tensor, nn

from selfdamage._checks import check_real
from selfdamage.longtail._method_losses import dino_per_sample, queue_per_sample, tico_per_sample

__all__ = [
    "dcl_per_sample",
    "ntxent_per_sample",
    "per_sample_loss",
    "record_per_sample",
    "why_no_per_sample",
]

WeightFn = Callable[[Tensor, Tensor], Tensor]
T = TypeVar("T")

_BATCH_LEVEL = {
    BarlowTwinsLoss: "is a function of the whole batch's cross-correlation matrix, "
    "not a mean of per-sample terms",
    VICRegLoss: "has variance and covariance terms that are statistics of the whole batch, "
    "not means of per-sample terms",
}
_PER_SAMPLE = (NTXentLoss, DCLLoss, NegativeCosineSimilarity, TiCoLoss, DINOLoss)


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


def per_sample_loss(
    criterion: nn.Module,
    z0: Tensor | Sequence[Tensor],
    z1: Tensor | Sequence[Tensor],
    **options: Any,
) -> Tensor:
    """The per-sample losses of one call of a loss module: their mean is ``criterion(z0, z1)``.

    Each sample's term of the loss that ``criterion(z0, z1, **options)`` returns, from the
    module's state as it is now (temperature, memory bank, running covariance, center),
    that is as the call would see it:

    - lightly's ``NTXentLoss`` without memory bank, ``DCLLoss``, ``DCLWLoss``:
      :func:`ntxent_per_sample`, :func:`dcl_per_sample`, with the loss's temperature,
      weighting and ``gather_distributed``;
    - ``NTXentLoss`` with a memory bank (MoCo): each query's InfoNCE, ``z0[i]`` against
      its key ``z1[i]`` and the bank's keys (the bank before the call enqueues);
    - ``NegativeCosineSimilarity`` (BYOL, SimSiam): ``-cos(z0[i], z1[i])``;
    - ``TiCoLoss``: ``1 - u_i . v_i + rho u_i^T C' u_i``, ``u, v`` the normalized ``z0,
      z1`` and ``C' = beta C + (1 - beta) u^T u / N`` as the loss computes it (its
      ``update_covariance_matrix`` option changes nothing here);
    - ``DINOLoss``, with ``z0`` the teacher's and ``z1`` the student's outputs (lists of
      ``(N, D)`` tensors) and the loss's ``epoch`` or ``teacher_temp``: each sample's
      teacher-student cross-entropy, averaged over the pairs of different views;
    - any other module with a ``per_sample`` method, called as ``criterion.per_sample(z0,
      z1, **options)``; or with ``reduction == "mean"`` (torch's losses): its values with
      ``reduction="none"``, averaged over all but the first dimension.

    Args:
        criterion: The loss module.
        z0: The loss's first input, rows ``(N, D)`` (DINO: the teacher outputs).
        z1: The loss's second input (DINO: the student outputs).
        **options: The loss's keyword arguments (DINO's ``epoch``).

    Returns:
        The loss of each sample (each row of ``z0``), shape ``(N,)``.

    Raises:
        TypeError: If ``criterion`` has no per-sample losses (:func:`why_no_per_sample`
            says why): lightly's ``BarlowTwinsLoss`` and ``VICRegLoss``, or an unknown loss.

    Examples:
        >>> criterion = NTXentLoss(temperature=0.5)
        >>> z0, z1 = torch.randn(4, 8), torch.randn(4, 8)
        >>> per_sample_loss(criterion, z0, z1).shape
        torch.Size([4])
        >>> losses = per_sample_loss(NegativeCosineSimilarity(), z0, z1)
        >>> bool(torch.isclose(losses.mean(), NegativeCosineSimilarity()(z0, z1)))
        True
    """
    reason = why_no_per_sample(criterion)
    if reason is not None:
        raise TypeError(f"criterion has no per-sample losses: {reason}.")
    own = getattr(criterion, "per_sample", None)
    if callable(own):
        values: Tensor = own(z0, z1, **options)
        return values
    if isinstance(criterion, DINOLoss):
        return dino_per_sample(criterion, list(z0), list(z1), **options)
    z0, z1 = cast(Tensor, z0), cast(Tensor, z1)
    if isinstance(criterion, NTXentLoss):
        gather = criterion.gather_distributed
        if criterion.memory_bank.size[0] == 0:
            return ntxent_per_sample(z0, z1, criterion.temperature, gather_distributed=gather)
        return queue_per_sample(z0, z1, criterion.memory_bank.bank, criterion.temperature)
    if isinstance(criterion, DCLLoss):
        return dcl_per_sample(
            z0,
            z1,
            criterion.temperature,
            weight_fn=criterion.weight_fn,
            gather_distributed=criterion.gather_distributed,
        )
    if isinstance(criterion, NegativeCosineSimilarity):
        if criterion.dim % z0.dim() == 0:
            raise ValueError("NegativeCosineSimilarity(dim=0) compares along the batch.")
        cosine = F.cosine_similarity(z0, z1, criterion.dim, criterion.eps)
        return -cosine.reshape(len(z0), -1).mean(1)
    if isinstance(criterion, TiCoLoss):
        return tico_per_sample(criterion, z0, z1)
    return _reduction_none(criterion, z0, z1, **options)


def why_no_per_sample(criterion: nn.Module) -> str | None:
    """Why :func:`per_sample_loss` has no per-sample losses for ``criterion``; None if it has.

    A loss has per-sample losses when it is a mean over samples of a term per sample,
    which may depend on the rest of the batch (NT-Xent's negatives, TiCo's covariance).
    lightly's ``BarlowTwinsLoss`` and ``VICRegLoss`` are not: their terms are statistics
    of the whole batch (the cross-correlation matrix; the variance and covariance of each
    feature), which no sum over samples gives.

    Examples:
        >>> from lightly.loss import BarlowTwinsLoss
        >>> why_no_per_sample(NTXentLoss()) is None
        True
        >>> why_no_per_sample(BarlowTwinsLoss())
        "its loss, BarlowTwinsLoss, is a function of the whole batch's cross-correlation matrix, not a mean of per-sample terms"
    """  # noqa: E501
    name = type(criterion).__name__
    for batch_level, reason in _BATCH_LEVEL.items():
        if isinstance(criterion, batch_level):
            return f"its loss, {name}, {reason}"
    if (
        isinstance(criterion, _PER_SAMPLE)
        or callable(getattr(criterion, "per_sample", None))
        or getattr(criterion, "reduction", None) == "mean"
    ):
        return None
    return (
        f"its loss, {name}, has no known per-sample form: give it a per_sample(z0, z1) "
        "method that returns one loss per sample, whose mean is the loss, or use a loss with "
        "reduction='mean' that also computes reduction='none'"
    )


def record_per_sample(
    criterion: nn.Module, step: Callable[[], T], batch_size: int | None = None
) -> tuple[T, Tensor]:
    """Runs ``step()`` and returns its result with the per-sample losses of its loss calls.

    Each call of ``criterion`` in ``step`` gives, before it runs (so from the state it
    sees), its :func:`per_sample_loss`, without gradient. A call on ``k * batch_size`` rows
    (MoCo's one call on both views' queries) gives each sample the mean of its ``k`` rows;
    the result is the mean over the calls, the per-sample form of a step whose loss is the
    mean of its loss calls. Nothing is computed twice but the loss formula. A call's
    arguments are bound to the loss's ``forward``: its first two are ``z0`` and ``z1``,
    the others go to :func:`per_sample_loss` by name, however the step passed them
    (``dino(t, s, None, 2)`` as ``epoch=2``).

    Args:
        criterion: The loss module that ``step`` calls.
        step: The step, e.g. an adapter's forward on a batch.
        batch_size: The number of samples; None for the fewest rows of a call.

    Returns:
        ``step()``'s result, and the per-sample losses: detached, shape ``(batch_size,)``,
        at least float32.

    Raises:
        TypeError: If ``criterion`` has no per-sample losses (:func:`per_sample_loss`),
            or a call's arguments do not fit its ``forward`` or give it other than two
            inputs (through ``*args``).
        RuntimeError: If ``step`` does not call ``criterion``.
        ValueError: If a call's rows are not a multiple of ``batch_size``.

    Examples:
        >>> criterion = NegativeCosineSimilarity()
        >>> p0, p1, t0, t1 = torch.randn(4, 4, 8)
        >>> loss, losses = record_per_sample(
        ...     criterion, lambda: (criterion(p0, t1) + criterion(p1, t0)) / 2)
        >>> losses.shape, bool(torch.isclose(losses.mean(), loss))
        (torch.Size([4]), True)
    """
    calls: list[Tensor] = []

    def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        z0, z1, options = _loss_inputs(module, args, kwargs)
        with torch.no_grad():
            calls.append(per_sample_loss(module, z0, z1, **options).detach())

    handle = criterion.register_forward_pre_hook(record, with_kwargs=True)
    try:
        result = step()
    finally:
        handle.remove()
    if not calls:
        raise RuntimeError(f"the step never called its loss, {type(criterion).__name__}.")
    n = min(len(values) for values in calls) if batch_size is None else batch_size
    if any(len(values) % n for values in calls):
        rows = [len(values) for values in calls]
        raise ValueError(f"loss calls on {rows} rows, not multiples of {n} samples.")
    losses = torch.stack([values.reshape(-1, n).mean(0) for values in calls]).mean(0)
    return result, losses.to(torch.promote_types(losses.dtype, torch.float32))


def _loss_inputs(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any, dict[str, Any]]:
    """A loss call's two inputs and its other arguments by name, bound to its ``forward``:
    ``dino(t, s, None, 2)`` gives ``(t, s, {"teacher_temp": None, "epoch": 2})``."""
    signature = inspect.signature(module.forward)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"{type(module).__name__} called with bad arguments: {error}") from None
    inputs: list[Any] = []
    options: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            inputs.extend(value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            options.update(value)
        elif len(inputs) < 2 and kind is not inspect.Parameter.KEYWORD_ONLY:
            inputs.append(value)
        else:
            options[name] = value
    if len(inputs) != 2:
        raise TypeError(
            f"{type(module).__name__} was called with {len(inputs)} inputs before its "
            "options; per_sample_loss needs two (z0, z1), the other arguments by name."
        )
    return inputs[0], inputs[1], options


def _reduction_none(criterion: nn.Module, z0: Tensor, z1: Tensor, **options: Any) -> Tensor:
    """A ``reduction="mean"`` loss's values with ``reduction="none"``, averaged per row."""
    setattr(criterion, "reduction", "none")  # noqa: B010 (nn.Module types attributes)
    try:
        values: Tensor = criterion.forward(z0, z1, **options)
    finally:
        setattr(criterion, "reduction", "mean")  # noqa: B010
    return values.reshape(len(z0), -1).mean(1)


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
