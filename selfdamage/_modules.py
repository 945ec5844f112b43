"""What several parts of the package ask of a module: its device, a mode for a block, its hooks."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["device_of", "forward_pre_hooks", "in_mode"]


def device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); CPU if it has neither.

    Examples:
        >>> device_of(nn.Linear(2, 2)), device_of(nn.ReLU())
        (device(type='cpu'), device(type='cpu'))
    """
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextmanager
def in_mode(module: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Puts ``module`` in training or eval mode for a block, then gives each submodule its own back.

    Examples:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).eval()
        >>> _ = model[1].train()
        >>> with in_mode(model, True):
        ...     [m.training for m in model.modules()]
        [True, True, True]
        >>> [m.training for m in model.modules()]
        [False, False, True]
    """
    modes = [(m, m.training) for m in module.modules()]
    module.train(training)
    try:
        yield module
    finally:
        for m, training_before in modes:
            m.training = training_before


def forward_pre_hooks(module: nn.Module) -> list[Callable[..., Any]]:
    """The forward pre-hooks registered on ``module`` itself (not on its children).

    PyTorch has no public accessor for them; this is the package's one reader.

    Examples:
        >>> layer = nn.Linear(2, 2)
        >>> handle = layer.register_forward_pre_hook(lambda module, args: None)
        >>> len(forward_pre_hooks(layer))
        1
    """
    return list(module._forward_pre_hooks.values())  # noqa: SLF001
