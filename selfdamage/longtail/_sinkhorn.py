"""The Sinkhorn iteration behind ``harmonization.sinkhorn``, and the check of its settings."""

from __future__ import annotations

import torch
from torch import Tensor

from selfdamage._checks import check_int, check_real

__all__ = ["check_sinkhorn", "sinkhorn_iterations"]

# sinkhorn starts from the authors' ``v = 1/N`` expressed for the row-shifted kernel,
# ``exp(gap_i) / N``, ``gap_i`` row i's maximum minus the largest, over epsilon (<= 0);
# floored at -_GAP_FLOOR so that the first factors (up to ``N e^50``) stay in float32.
_GAP_FLOOR = 50.0


@torch.no_grad()
def sinkhorn_iterations(
    logits: Tensor, prior: Tensor | None, epsilon: float, iterations: int
) -> Tensor:
    """``harmonization.sinkhorn`` without the checks."""
    scores = logits.detach().float()
    n, k = scores.shape
    if prior is None:
        mass = torch.full((k,), 1.0 / k, device=scores.device)
        row_max = scores.amax(dim=1, keepdim=True)
    else:
        mass = prior.detach().float() / prior.sum()
        # A row's 1 must be in a column with mass: u is 0 in the others.
        row_max = torch.where(mass > 0, scores, float("-inf")).amax(dim=1, keepdim=True)
    exponent = (scores - row_max) / epsilon
    kernel = torch.exp(exponent - exponent.amax(dim=0, keepdim=True))
    gap = (row_max.squeeze(1) - row_max.amax()) / epsilon
    v = torch.exp(gap.clamp(min=-_GAP_FLOOR)) / n
    for _ in range(iterations):
        u = mass / (kernel.T @ v)
        v = (1.0 / n) / (kernel @ u)
    return n * v[:, None] * kernel * u[None, :]


def check_sinkhorn(
    logits: Tensor, prior: Tensor | None, epsilon: float, iterations: int
) -> tuple[float, int]:
    """The checked ``epsilon`` and ``iterations``; raises on a bad ``prior`` for ``logits``."""
    epsilon = check_real("epsilon", epsilon, 0.0, low_open=True)
    iterations = check_int("iterations", iterations, 1)
    if prior is None:
        return epsilon, iterations
    k = logits.shape[-1]
    if not isinstance(prior, Tensor) or prior.dtype == torch.bool or prior.is_complex():
        shown = f"dtype {prior.dtype}" if isinstance(prior, Tensor) else type(prior).__name__
        raise TypeError(
            f"prior must be a real tensor of shape ({k},), one mass per prototype, or None "
            f"for uniform, got {shown}."
        )
    if prior.shape != (k,):
        raise ValueError(
            f"prior must have shape ({k},), one mass per prototype (column of the scores), "
            f"got shape {tuple(prior.shape)}."
        )
    if prior.device.type == "cpu":  # elsewhere a host sync: not checked
        values = prior.detach().double()
        if not (torch.isfinite(values).all() and (values >= 0).all() and values.sum() > 0):
            raise ValueError(
                "prior must be finite and non-negative with a positive sum (it is "
                f"normalised here), got prior={prior}."
            )
    return epsilon, iterations
