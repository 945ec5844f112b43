"""The twin's own normalization state ("dual BN" in SDCLR).

The pruned twin sees differently distributed activations than the dense model, so SDCLR
gives it separate BatchNorm layers: affine parameters *and* running statistics. Here the
user's BatchNorm modules stay untouched; :class:`TwinNorm` holds the twin's copy of one
layer's state and is swapped in only during a twin pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

__all__ = ["TwinNorm"]

_STATE_NAMES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def has_running_stats(module: nn.Module) -> bool:
    """Whether ``module`` is a normalization layer that keeps running statistics.

    True for every ``_NormBase`` subclass that tracks running statistics:
    ``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, lazy variants, and ``InstanceNorm1d/2d/3d``
    with ``track_running_stats=True``.

    Examples:
        >>> has_running_stats(nn.BatchNorm2d(8)), has_running_stats(nn.LayerNorm(8))
        (True, False)
    """
    return isinstance(module, _NormBase) and module.track_running_stats


class TwinNorm(nn.Module):
    """The twin's copy of one normalization layer's parameters and running statistics.

    Initialised as a copy of the dense layer's state. The twin's affine parameters are
    trained (they are registered parameters), and its running statistics are updated
    in place by twin passes in training mode, exactly as BatchNorm updates its own.

    Args:
        norm: The dense normalization layer to copy.

    Examples:
        >>> bn = nn.BatchNorm2d(4)
        >>> twin = TwinNorm(bn)
        >>> sorted(twin.substitutes("layer.bn").keys())[:2]
        ['layer.bn.bias', 'layer.bn.num_batches_tracked']
    """

    weight: nn.Parameter | None
    bias: nn.Parameter | None
    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(self, norm: _NormBase) -> None:
        super().__init__()
        for name in ("weight", "bias"):
            value = getattr(norm, name)
            param = None if value is None else nn.Parameter(value.detach().clone())
            self.register_parameter(name, param)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            value = getattr(norm, name)
            self.register_buffer(name, None if value is None else value.detach().clone())

    def substitutes(self, prefix: str) -> dict[str, Tensor]:
        """Maps the dense layer's parameter and buffer names to this twin state.

        Args:
            prefix: The dense layer's qualified name in the model (``""`` for the root).

        Returns:
            ``{qualified name: tensor}`` for every state tensor the layer has.
        """
        dot = f"{prefix}." if prefix else ""
        return {
            dot + name: value for name in _STATE_NAMES if (value := getattr(self, name)) is not None
        }


def throwaway_statistics(norm: _NormBase, prefix: str) -> dict[str, Tensor]:
    """Copies of a layer's running statistics, for a twin pass that must not update them.

    Used when the twin shares the dense normalization layers (``twin_norm=False``): the
    twin normalizes with batch statistics in training mode, and the update it makes to
    the running statistics lands in these copies, which are then dropped.
    """
    dot = f"{prefix}." if prefix else ""
    return {
        dot + name: value.clone()
        for name in ("running_mean", "running_var", "num_batches_tracked")
        if isinstance(value := getattr(norm, name), torch.Tensor)
    }
