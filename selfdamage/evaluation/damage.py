"""Damage scores: how much the pruned twin disagrees with the dense model, per sample."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from selfdamage._modules import device_of, in_mode
from selfdamage.evaluation._inputs import split_batch
from selfdamage.wrapper import SelfDamagingWrapper

__all__ = ["damage_scores"]


@torch.no_grad()
def damage_scores(
    wrapper: SelfDamagingWrapper,
    loader: Iterable[Any],
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """Per-sample disagreement ``1 - cos(wrapper(x), wrapper.damaged(x))``.

    SDCLR's premise [0] is that pruning makes a network forget rare samples first, so
    the samples on which the twin departs most from the dense model are candidates for
    the tail of an unlabeled set. Rank samples by this score to mine them; with labels,
    :func:`~selfdamage.evaluation.auroc` measures how well the score finds tail
    classes. Both branches run in eval mode (each with its own BatchNorm running
    statistics); every submodule gets its previous mode back afterwards. Outputs are
    flattened per sample before the cosine.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990

    Args:
        wrapper: The wrapped model, with its current mask.
        loader: Yields input batches, or ``(input, ...)`` tuples whose first element is
            the input (labels, if any, are ignored). Keep it unshuffled to align scores
            with the dataset.
        device: Where the model runs. Default: the device of its parameters.

    Returns:
        ``float32`` scores of shape ``(N,)`` on the CPU, in ``[0, 2]``; 0 where the twin
        agrees with the dense model.

    Raises:
        TypeError: If ``wrapper`` is not a ``SelfDamagingWrapper``, batches are
            malformed, or the model does not return a tensor.
        ValueError: If the loader is empty.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten())
        >>> wrapper = SelfDamagingWrapper(model, prune_ratio=0.5)
        >>> batches = [torch.randn(4, 3, 8, 8), torch.randn(2, 3, 8, 8)]
        >>> scores = damage_scores(wrapper, batches)
        >>> scores.shape, bool((scores > 0).all())
        (torch.Size([6]), True)
    """
    if not isinstance(wrapper, SelfDamagingWrapper):
        raise TypeError(
            "wrapper must be a SelfDamagingWrapper, got "
            f"{type(wrapper).__name__}; wrap the model with SelfDamagingWrapper(model)."
        )
    device = device_of(wrapper) if device is None else torch.device(device)
    scores = []
    with in_mode(wrapper, False):
        for batch in loader:
            inputs = split_batch(batch, need_labels=False)[0].to(device)
            dense, twin = wrapper(inputs), wrapper.damaged(inputs)
            if not isinstance(dense, Tensor) or not isinstance(twin, Tensor):
                raise TypeError(
                    f"the wrapped model must return a tensor, got {type(dense).__name__}."
                )
            cosine = F.cosine_similarity(dense.flatten(1), twin.flatten(1), dim=1)
            scores.append((1.0 - cosine).float().cpu())
    if not scores:
        raise ValueError("loader is empty: it yielded no batches.")
    return torch.cat(scores)
