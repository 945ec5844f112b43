"""Geometric harmonization (GH): a Sinkhorn-balanced loss toward a simplex ETF, after warm-up."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from selfdamage._checks import check_int, check_real
from selfdamage.longtail._sinkhorn import check_sinkhorn, sinkhorn_iterations
from selfdamage.longtail.simplex_etf import simplex_etf

__all__ = ["GeometricHarmonization", "harmonization_loss", "sinkhorn"]

# The authors' CIFAR-100-LT recipe (train_cifar.py and README.md), the base of ``scaled_to``.
_AUTHORS_EPOCHS = 1000
_AUTHORS_WARMUP = 500
_AUTHORS_RAMP = 10
_AUTHORS_PRIOR_EVERY = 20


def sinkhorn(
    logits: Tensor, prior: Tensor | None = None, *, epsilon: float = 0.05, iterations: int = 300
) -> Tensor:
    """Balanced soft assignments of ``N`` samples to ``K`` prototypes, by Sinkhorn-Knopp.

    Scales ``exp(logits / epsilon)`` by a column factor ``u`` (``K``) and a row factor
    ``v`` (``N``) so that each prototype receives the mass ``prior`` and each sample the
    mass ``1/N``; ``iterations`` alternate updates, columns first, as the authors'
    ``utils.py``, ``sinkhorn``: ``u = prior / (P^T v)``, ``v = (1/N) / (P u)``, starting
    from ``v = 1/N``. The result is multiplied by ``N``, so every row sums to 1 (the
    last update is the row one); the columns sum to about ``N * prior``.

    Runs without gradient, in float32, on ``logits``' device, with no host sync.
    ``P`` is first divided by its largest entry in each row (over the prototypes with
    mass), then in each column, so that every row and every column of it holds a 1 and
    no row or column underflows to zeros: a column factor is absorbed into ``u`` at
    once, a row factor into ``v``, whose start becomes ``exp(gap) / N`` (``gap`` a
    row's maximum minus the largest, over ``epsilon``). The result is the authors'
    iteration, at any number of iterations, whenever every ``gap >= -50``: always for
    unit-norm scores (GH's) with ``epsilon >= 0.04``. A row further below starts from
    ``exp(-50) / N`` instead, which changes the first iterations, not the assignments
    they converge to. Scores whose balancing needs factors beyond float32's range
    (spreads of several hundred ``epsilon``, such as standard normal logits times 3 over
    100 prototypes at ``epsilon = 0.05``) can still overflow to NaN: normalise the
    scores, as GH does, or raise ``epsilon``.

    Args:
        logits: Scores, shape ``(N, K)``.
        prior: Target mass per prototype, shape ``(K,)``, non-negative with a positive
            sum, normalised here. None for uniform. Its values are checked on the CPU
            only: on an accelerator, a check would cost a host sync each call.
        epsilon: The entropic regularisation, ``> 0``; smaller is sharper (the authors:
            0.05).
        iterations: Number of Sinkhorn iterations, at least 1 (the authors: 300).

    Returns:
        The assignments ``q``, shape ``(N, K)``, float32, rows summing to 1.

    Raises:
        TypeError: If ``epsilon`` is not a float, ``iterations`` not an int, or
            ``prior`` not a real tensor.
        ValueError: If ``epsilon <= 0``, ``iterations < 1``, ``prior``'s shape is not
            ``(K,)``, or (on the CPU) ``prior`` has a negative or non-finite entry or
            sums to 0.

    Examples:
        >>> logits = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0]])
        >>> q = sinkhorn(logits, epsilon=0.5, iterations=100)
        >>> q.sum(dim=1).round(decimals=4)  # each sample: one unit of mass
        tensor([1., 1., 1., 1.])
        >>> q.sum(dim=0).round(decimals=3)  # each prototype: N / K, not 3 and 1
        tensor([2., 2.])
    """
    epsilon, iterations = check_sinkhorn(logits, prior, epsilon, iterations)
    return sinkhorn_iterations(logits, prior, epsilon, iterations)


def harmonization_loss(
    logits0: Tensor,
    logits1: Tensor,
    prior: Tensor | None = None,
    *,
    epsilon: float = 0.05,
    iterations: int = 300,
    temperature: float = 0.1,
) -> Tensor:
    """GH's swapped-prediction loss between two views' prototype scores.

    Each view's Sinkhorn assignment (:func:`sinkhorn`, no gradient) is the target of the
    other view's softmax at ``temperature``; the two cross-entropies are summed, as the
    authors' ``utils.py``, ``GHLoss.loss``::

        L = -mean_i sum_k q0_ik log softmax(l1_i / t)_k - mean_i sum_k q1_ik log softmax(l0_i / t)_k

    Args:
        logits0: First view's scores, shape ``(N, K)``.
        logits1: Second view's scores, same shape.
        prior: Target mass per prototype, see :func:`sinkhorn` (checked the same way).
        epsilon, iterations: The Sinkhorn settings, see :func:`sinkhorn`.
        temperature: Softmax temperature of the predictions, ``> 0`` (the authors: 0.1).

    Returns:
        The loss, a scalar tensor.

    Raises:
        TypeError, ValueError: On a bad ``prior``, ``epsilon`` or ``iterations``, as
            :func:`sinkhorn`; if ``temperature`` is not a float (TypeError) or not
            ``> 0`` (ValueError).

    Examples:
        Already balanced scores keep their softmax at ``epsilon``: ``q = [0.982, 0.018]``
        per row (``1 / (1 + e^-4)``); at ``temperature=1`` the predictions are
        ``log softmax = [-0.127, -2.127]``, so each term is ``0.163``:

        >>> logits = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
        >>> loss = harmonization_loss(logits, logits, epsilon=0.5, temperature=1.0)
        >>> round(loss.item(), 4)
        0.3258
    """
    epsilon, iterations = check_sinkhorn(logits0, prior, epsilon, iterations)
    temperature = check_real("temperature", temperature, 0.0, low_open=True)
    q0 = sinkhorn_iterations(logits0, prior, epsilon, iterations)
    q1 = sinkhorn_iterations(logits1, prior, epsilon, iterations)
    log_p0 = F.log_softmax(logits0 / temperature, dim=1)
    log_p1 = F.log_softmax(logits1 / temperature, dim=1)
    return -(q0 * log_p1).sum(dim=1).mean() - (q1 * log_p0).sum(dim=1).mean()


class GeometricHarmonization(nn.Module):
    """Geometric harmonization [0]: category-level uniformity on top of any two-view SSL loss.

    Projections ``z`` are scored against ``K`` fixed directions, a simplex ETF
    (:func:`~selfdamage.longtail.simplex_etf.simplex_etf`): ``l = normalize(z @ M^T)``.
    The loss (:func:`harmonization_loss`) asks each view to predict the other's
    Sinkhorn assignment, whose prototype masses follow a *surrogate label prior*
    ``pi``: so the batch spreads over the frame by estimated category, not by sample.
    ``pi`` is estimated from a per-sample memory of scores, an exponential moving
    average keyed by dataset index; it is the share of samples whose remembered
    scores peak at each prototype. All as in the authors' ``train_cifar.py``
    (``ssl_training``) and ``utils.py`` (``GHLoss``, ``sinkhorn``).

    Three calls, as in the authors' loop:

    - :meth:`set_epoch` at the start of every epoch (0-based). Before ``warmup_epochs``
      the loss is zero and costs nothing; then its weight rises linearly over
      ``ramp_epochs`` to ``weight``.
    - ``gh(z0, z1)`` each step: the weighted loss, to add to the method's loss.
    - :meth:`update` each step, from epoch 0 (warm-up included): writes the dense
      view's scores into the memory and, in refresh epochs, re-estimates ``pi``.

    The frame, the memory, the prior and the epoch are in the ``state_dict``, so a
    resumed run continues identically. With SDCLR, pass the dense and the twin
    projections: ``gh(z_dense, z_twin)`` gives the gradient of the authors'
    ``sdclr_GH``, which adds GH on both branches with one shared prior.

    - [0] Geometric Harmonization, NeurIPS 2023, https://arxiv.org/abs/2310.17622

    Args:
        dim: Width of the projections (the authors: 128).
        num_prototypes: ``K``, the frame's size, at most ``dim`` (the authors: 100).
        num_samples: Size of the training set: the memory has a row per dataset index
            (``num_samples * num_prototypes`` floats: 46 MB for ImageNet-LT at ``K = 100``).
        weight: The loss weight after the ramp (the authors: 1).
        warmup_epochs: Epochs of the plain method before GH (the authors: 500 of 1000 on
            CIFAR-100-LT, 400 on ImageNet-LT and Places-LT).
        ramp_epochs: Epochs of the linear weight ramp (the authors: 10 on CIFAR-100-LT,
            30 on ImageNet-LT); 0 for none.
        sinkhorn_iterations: The authors: 300.
        epsilon: Sinkhorn's entropic regularisation (the authors: 0.05).
        temperature: Temperature of the predictions (the authors: 0.1).
        momentum: Memory momentum from ``warmup_epochs`` on (the authors: 0.999).
        warmup_momentum: Memory momentum during warm-up (the authors: 0.9).
        prior_every: ``pi`` is re-estimated at each step of every ``prior_every``-th
            epoch and of the last warm-up epoch (the authors: 20).
        seed: Seed of the frame.

    Raises:
        TypeError, ValueError: On a bad argument, naming it.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> gh = GeometricHarmonization(16, 4, num_samples=8, warmup_epochs=1, ramp_epochs=2)
        >>> z0, z1, index = torch.randn(4, 16), torch.randn(4, 16), torch.arange(4)
        >>> gh.set_epoch(0)
        >>> gh(z0, z1)  # warm-up: zero
        tensor(0.)
        >>> gh.update(z0, index)
        >>> gh.set_epoch(1)
        >>> gh.current_weight  # first GH epoch: half of weight, the ramp being 2 epochs
        0.5
        >>> gh(z0, z1).item() > 0
        True
    """

    target: Tensor
    memory: Tensor
    prior: Tensor

    def __init__(
        self,
        dim: int = 128,
        num_prototypes: int = 100,
        *,
        num_samples: int,
        weight: float = 1.0,
        warmup_epochs: int = _AUTHORS_WARMUP,
        ramp_epochs: int = _AUTHORS_RAMP,
        sinkhorn_iterations: int = 300,
        epsilon: float = 0.05,
        temperature: float = 0.1,
        momentum: float = 0.999,
        warmup_momentum: float = 0.9,
        prior_every: int = _AUTHORS_PRIOR_EVERY,
        seed: int = 0,
    ) -> None:
        super().__init__()
        dim = check_int("dim", dim, 2)
        k = check_int("num_prototypes", num_prototypes, 2, dim, fix="A simplex ETF needs K <= dim.")
        self.weight = check_real("weight", weight, 0.0)
        self.warmup_epochs = check_int("warmup_epochs", warmup_epochs, 0)
        self.ramp_epochs = check_int("ramp_epochs", ramp_epochs, 0)
        self.sinkhorn_iterations = check_int("sinkhorn_iterations", sinkhorn_iterations, 1)
        self.epsilon = check_real("epsilon", epsilon, 0.0, low_open=True)
        self.temperature = check_real("temperature", temperature, 0.0, low_open=True)
        self.momentum = check_real("momentum", momentum, 0.0, 1.0)
        self.warmup_momentum = check_real("warmup_momentum", warmup_momentum, 0.0, 1.0)
        self.prior_every = check_int("prior_every", prior_every, 1)
        rows = check_int("num_samples", num_samples, 1)
        self.register_buffer("target", simplex_etf(k, dim, seed=seed))
        self.register_buffer("memory", torch.zeros(rows, k))
        self.register_buffer("prior", torch.full((k,), 1.0 / k))
        self._epoch = 0

    @classmethod
    def scaled_to(cls, epochs: int, **kwargs: Any) -> GeometricHarmonization:
        """GH with the authors' schedule shrunk to a run of ``epochs`` epochs.

        The authors' CIFAR-100-LT run is 1000 epochs: warm-up 500, ramp 10, prior every
        20. Here each is the same fraction of ``epochs``, rounded, at least 1 (warm-up
        ``epochs // 2``). Other arguments (and any of these three, to override) go to
        the constructor.

        Examples:
            >>> gh = GeometricHarmonization.scaled_to(100, num_samples=10)
            >>> gh.warmup_epochs, gh.ramp_epochs, gh.prior_every
            (50, 1, 2)
        """
        epochs = check_int("epochs", epochs, 2)
        schedule = {
            "warmup_epochs": epochs * _AUTHORS_WARMUP // _AUTHORS_EPOCHS,
            "ramp_epochs": max(1, round(epochs * _AUTHORS_RAMP / _AUTHORS_EPOCHS)),
            "prior_every": max(1, round(epochs * _AUTHORS_PRIOR_EVERY / _AUTHORS_EPOCHS)),
        }
        return cls(**{**schedule, **kwargs})

    @property
    def epoch(self) -> int:
        """The current epoch, 0-based, as last given to :meth:`set_epoch`."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch (0-based): call it at the start of every epoch."""
        self._epoch = check_int("epoch", epoch, 0)

    @property
    def current_weight(self) -> float:
        """The loss weight this epoch, 0 in warm-up, then a linear ramp up to ``weight``.

        The authors' ``w = (epoch + 1 - warm_up) / GH_warm_up`` while it is below 1.
        """
        if self._epoch < self.warmup_epochs:
            return 0.0
        if self.ramp_epochs == 0:
            return self.weight
        return self.weight * min(1.0, (self._epoch + 1 - self.warmup_epochs) / self.ramp_epochs)

    def scores(self, z: Tensor) -> Tensor:
        """The projections' scores against the frame: ``normalize(z @ target^T)``, ``(N, K)``.

        Examples:
            >>> gh = GeometricHarmonization(8, 3, num_samples=1)
            >>> norms = gh.scores(torch.randn(2, 8)).norm(dim=1)  # unit rows
            >>> torch.allclose(norms, torch.ones(2))
            True
        """
        return F.normalize(z @ self.target.T, dim=1)

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        """The weighted GH loss of one step; zero (and nothing computed) in warm-up.

        Args:
            z0: First view's projections, shape ``(N, dim)``: the dense branch's.
            z1: Second view's projections, same shape: the twin's under SDCLR.

        Returns:
            ``current_weight * harmonization_loss(scores(z0), scores(z1), prior)``, a
            scalar tensor.

        Raises:
            ValueError: If the shapes differ or are not ``(N, dim)``.
        """
        self._check_projections(z0, "z0")
        self._check_projections(z1, "z1")
        if z0.shape != z1.shape:
            raise ValueError(
                f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and "
                f"{tuple(z1.shape)}: row i of both must be views of the same sample."
            )
        weight = self.current_weight
        if weight == 0.0:
            return z0.new_zeros(())
        loss = harmonization_loss(
            self.scores(z0),
            self.scores(z1),
            self.prior,
            epsilon=self.epsilon,
            iterations=self.sinkhorn_iterations,
            temperature=self.temperature,
        )
        return weight * loss

    @torch.no_grad()
    def update(self, z: Tensor, indices: Tensor) -> None:
        """Writes the projections' scores into the memory; re-estimates the prior when due.

        Call it every step from epoch 0, with the first view's projections (the dense
        branch's under SDCLR) and the samples' dataset indices, as the authors' loop
        does after each step: in epoch 0 the memory row is added to (it starts at zero);
        later ``row = beta * row + (1 - beta) * score``, with ``beta`` =
        ``warmup_momentum`` before ``warmup_epochs`` and ``momentum`` from then on. In
        the last warm-up epoch and every ``prior_every``-th epoch after it, the prior
        becomes the share of samples whose memory row peaks at each prototype.

        Under ``torch.distributed`` the scores and indices of all ranks are gathered
        first (equal batch sizes on every rank), so every rank keeps the same memory.
        Indices must be distinct within a step and in ``[0, num_samples)`` (not checked:
        that would cost a host sync).

        Args:
            z: Projections, shape ``(N, dim)``.
            indices: Their dataset indices, shape ``(N,)``, integer.

        Raises:
            ValueError: If the shapes do not match, or ``indices`` is not an integer
                tensor (a boolean mask would be read as indices 0 and 1).
        """
        self._check_projections(z, "z")
        integer = not (indices.is_floating_point() or indices.is_complex())
        if indices.shape != (z.shape[0],) or not integer or indices.dtype == torch.bool:
            raise ValueError(
                f"indices must be an integer tensor of shape ({z.shape[0]},), one dataset "
                f"index per row of z, got dtype={indices.dtype} and shape "
                f"{tuple(indices.shape)}."
            )
        scores = _gather(self.scores(z.detach()).float())
        indices = _gather(indices.to(self.memory.device))
        if self._epoch == 0:
            self.memory[indices] += scores
        else:
            beta = self.momentum if self._epoch >= self.warmup_epochs else self.warmup_momentum
            self.memory[indices] = beta * self.memory[indices] + (1.0 - beta) * scores
        if self._refreshes_prior():
            peaks = self.memory.argmax(dim=1)
            ones = torch.ones_like(peaks, dtype=self.prior.dtype)
            counts = torch.zeros_like(self.prior).index_add_(0, peaks, ones)
            self.prior.copy_(counts / self.memory.shape[0])

    def _refreshes_prior(self) -> bool:
        done = self._epoch + 1
        due = done % self.prior_every == 0 or done == self.warmup_epochs
        return due and done >= self.warmup_epochs

    def _check_projections(self, z: Tensor, name: str) -> None:
        dim = self.target.shape[1]
        if z.dim() != 2 or z.shape[1] != dim or z.shape[0] == 0:
            raise ValueError(
                f"{name} must be projections of shape (N, {dim}) with N >= 1, got shape "
                f"{tuple(z.shape)}. Pass the projection head's output (before any "
                "normalisation), with dim matching its width."
            )

    def get_extra_state(self) -> dict[str, int]:
        """The epoch, saved in the ``state_dict`` next to the buffers."""
        return {"epoch": self._epoch}

    def set_extra_state(self, state: Any) -> None:
        """Restores the epoch from a ``state_dict``."""
        self.set_epoch(state["epoch"])

    def extra_repr(self) -> str:
        k, dim = self.target.shape
        return (
            f"dim={dim}, num_prototypes={k}, num_samples={self.memory.shape[0]}, "
            f"weight={self.weight}, warmup_epochs={self.warmup_epochs}, epoch={self._epoch}"
        )


def _gather(tensor: Tensor) -> Tensor:
    """``tensor`` from every rank, concatenated in rank order; itself outside DDP."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)
