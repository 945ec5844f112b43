"""Example inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs.

What channel damage does with the ``example_inputs`` it traces and checks shapes on: run a
model on them (:func:`call_with`), detach them for tracing (:func:`traceable`), keep only
their shapes (:func:`to_meta`), and make a batch of one a batch of two
(:func:`batch_of_two`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["batch_of_two", "call_with", "to_meta", "traceable"]


def call_with(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple or list, else ``model(x)``.

    Examples:
        >>> call_with(nn.Identity(), (torch.ones(1),))
        tensor([1.])
    """
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def to_meta(inputs: Any, dtype: torch.dtype | None = None) -> Any:
    """``meta`` tensors of the inputs' shapes; floating ones of ``dtype`` if given.

    Examples:
        >>> meta = to_meta({"x": torch.ones(2, 3)}, torch.float64)["x"]
        >>> meta.shape, meta.dtype, meta.device
        (torch.Size([2, 3]), torch.float64, device(type='meta'))
    """
    if isinstance(inputs, Tensor):
        cast = dtype is not None and inputs.is_floating_point()
        return torch.empty(inputs.shape, dtype=dtype if cast else inputs.dtype, device="meta")
    if isinstance(inputs, dict):
        return {k: to_meta(v, dtype) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(to_meta(v, dtype) for v in inputs)
    return inputs


def batch_of_two(inputs: Any) -> Any:
    """The inputs with every leading dimension of size 1 (a batch of one) made 2.

    Examples:
        >>> batch_of_two((torch.empty(1, 3, device="meta"), torch.empty(4, 3)))[0].shape
        torch.Size([2, 3])
    """
    if isinstance(inputs, Tensor):
        if inputs.dim() == 0 or inputs.shape[0] != 1:
            return inputs
        return inputs.expand(2, *inputs.shape[1:])
    if isinstance(inputs, dict):
        return {k: batch_of_two(v) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(batch_of_two(v) for v in inputs)
    return inputs


def traceable(inputs: Any, device: torch.device) -> Any:
    """The inputs detached on ``device``; floating tensors require grad, as tracing needs.

    Examples:
        >>> x, n = traceable((torch.ones(2), torch.tensor(3)), torch.device("cpu"))
        >>> x.requires_grad, n.requires_grad
        (True, False)
    """
    if isinstance(inputs, Tensor):
        x = inputs.detach().to(device)
        return x.requires_grad_(True) if x.is_floating_point() else x
    if isinstance(inputs, dict):
        return {k: traceable(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(traceable(v, device) for v in inputs)
    return inputs
