"""Per-sample forms of the losses of MoCo's queue, TiCo and DINO, for ``per_sample_loss``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.loss import DINOLoss, TiCoLoss
from lightly.utils import dist
from torch import Tensor

__all__ = ["dino_per_sample", "queue_per_sample", "tico_per_sample"]


def queue_per_sample(queries: Tensor, keys: Tensor, bank: Tensor, temperature: float) -> Tensor:
    """InfoNCE of each query: its key is the positive, the bank's rows the negatives."""
    q, k = F.normalize(queries, dim=1), F.normalize(keys, dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, q @ bank.to(q).T], dim=1) / temperature
    return torch.logsumexp(logits, dim=1) - logits[:, 0]


def tico_per_sample(criterion: TiCoLoss, z_a: Tensor, z_b: Tensor) -> Tensor:
    """TiCo's per-sample terms, with the covariance the loss would use on this call."""
    u, v = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    u_all = u
    if criterion.gather_distributed and dist.world_size() > 1:
        u_all = torch.cat(dist.gather(u), 0)
    batch = (u_all.T @ u_all).detach() / len(u_all)
    previous: Tensor | None = getattr(criterion, "C", None)  # None until lightly's first call
    previous = torch.zeros_like(batch) if previous is None else previous
    covariance = criterion.beta * previous + (1 - criterion.beta) * batch
    losses: Tensor = 1.0 - (u * v).sum(dim=1) + criterion.rho * ((u @ covariance) * u).sum(dim=1)
    return losses


def dino_per_sample(
    criterion: DINOLoss,
    teacher_out: list[Tensor],
    student_out: list[Tensor],
    teacher_temp: float | None = None,
    epoch: int | None = None,
) -> Tensor:
    """Each sample's DINO cross-entropy, averaged over the (teacher, student) pairs of
    different views, at the teacher temperature the loss would use."""
    if teacher_temp is not None:
        temperature = torch.tensor(teacher_temp)
    elif epoch is not None and epoch < criterion.warmup_teacher_temp_epochs:
        temperature = criterion.teacher_temp_schedule[epoch]
    else:
        temperature = torch.tensor(criterion.teacher_temp)
    teacher = F.softmax((torch.stack(teacher_out) - criterion.center) / temperature, dim=-1)
    student = F.log_softmax(torch.stack(student_out) / criterion.student_temp, dim=-1)
    cross = -torch.einsum("tbd,sbd->tsb", teacher, student)
    pairs = ~torch.eye(len(teacher), len(student), dtype=torch.bool, device=cross.device)
    return cross[pairs].sum(dim=0) / pairs.sum()
