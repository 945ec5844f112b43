"""Where a channel group sits in each parameter: torch-pruning's handlers as slices.

:mod:`selfdamage.damage.tracing` asks, for every layer of a group, which parameter slices
the handler torch-pruning chose names (:func:`slices_of`); the answer is plain data
(:class:`Slice`) that the masks are built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch_pruning as tp
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

__all__ = ["HANDLER_NAMES", "Slice", "slices_of"]


@dataclass(frozen=True)
class Slice:
    """Where one group's channels sit in one parameter.

    ``index[j]`` is the position along ``dim`` of the parameter that belongs to the
    group's root channel ``root[j]``. ``conv_groups > 1`` marks the input slice of a
    grouped convolution, whose weight holds ``in_channels / conv_groups`` inputs per group.
    ``output`` is False for input slices of the next layer (they do not decide whether
    the channel outputs zero).
    """

    param: str
    dim: int
    index: Tensor
    root: Tensor
    output: bool
    conv_groups: int = 1


HANDLER_NAMES = {
    getattr(tp.pruner.function, n): n for n in dir(tp.pruner.function) if n.startswith("prune_")
}


def slices_of(
    name: str, module: nn.Module, pruner: Any, is_out: bool, idxs: Tensor, root: Tensor
) -> list[Slice] | str:
    """The parameter slices a handler names, or why they are unknown."""
    fn = tp.pruner.function

    def both(dim: int, output: bool = True) -> list[Slice]:
        found = []
        for attr in ("weight", "bias"):
            if isinstance(getattr(module, attr, None), nn.Parameter):
                found.append(Slice(f"{name}.{attr}", dim, idxs, root, output))
        return found

    if isinstance(pruner, fn.DepthwiseConvPruner):
        return both(0)
    if isinstance(pruner, fn.ConvPruner) and isinstance(module, _ConvNd):
        if module.transposed and module.groups > 1:
            return "grouped transposed convolution"
        if is_out:
            weight_dim = 1 if module.transposed else 0
            found = [Slice(f"{name}.weight", weight_dim, idxs, root, True)]
            if module.bias is not None:
                found.append(Slice(f"{name}.bias", 0, idxs, root, True))
            return found
        if module.transposed:
            return [Slice(f"{name}.weight", 0, idxs, root, False)]
        return [Slice(f"{name}.weight", 1, idxs, root, False, module.groups)]
    if isinstance(pruner, fn.LinearPruner) and isinstance(module, nn.Linear):
        if is_out:
            return both(0)
        return [Slice(f"{name}.weight", 1, idxs, root, False)]
    if isinstance(pruner, (fn.BatchnormPruner, fn.GroupNormPruner, fn.InstanceNormPruner)):
        return both(0)
    if isinstance(pruner, fn.LayernormPruner) and isinstance(module, nn.LayerNorm):
        if len(module.normalized_shape) != 1:
            return "LayerNorm over more than one dimension"
        return both(0)
    if isinstance(pruner, fn.PReLUPruner):  # one shared slope has no channel slices
        return both(0) if getattr(module, "num_parameters", 1) > 1 else []
    return f"{type(module).__name__} layers are not supported"
