"""Layers channel damage cannot mask: transformed weights and tied weights.

A layer whose forward does not use its weight as is (weight or spectral normalization, a
parametrization, timm's weight-standardizing ``StdConv2d``: the test
:func:`~selfdamage.damage._scope.weight_transform` that weight damage applies too), or whose
weight another layer also holds, keeps every channel group it belongs to dense.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

from torch import nn

from selfdamage.damage._scope import weight_names, weight_transform

__all__ = ["UNUSABLE", "UNUSABLE_FIX", "check_left_dense", "parameter_owners", "unusable_weight"]

UNUSABLE = "cannot mask "
"""How the reason of a group left dense for a layer it cannot mask begins."""

UNUSABLE_FIX = (
    "Masking a channel of a layer whose forward does not use its weight as is (weight or "
    "spectral normalization, a parametrization, weight standardization as in timm's "
    "StdConv2d) does not zero it, and changes the layer's other channels; a tied weight "
    "is masked for every layer that uses it. (Weight damage leaves transformed weights "
    "out too.) To damage them, remove the weight transform (e.g. "
    "torch.nn.utils.parametrize.remove_parametrizations) or untie the weights."
)


def _listed(reasons: Mapping[str, str], n: int = 3) -> str:
    shown = "; ".join(f"{root} ({why})" for root, why in list(reasons.items())[:n])
    return shown + (f"; ... ({len(reasons) - n} more)" if len(reasons) > n else "")


def unusable_weight(model: nn.Module, path: str, owners: Mapping[int, list[str]]) -> str | None:
    """Why channel damage cannot mask the layer at ``path``, or None if it can.

    The layer's forward does not use its weight as is
    (:func:`~selfdamage.damage._scope.weight_transform`, the test weight damage applies),
    or one of its parameters is tied to another layer's.

    Args:
        model: The bare model.
        path: The layer's qualified name.
        owners: ``{id(parameter): qualified names of the layers holding it}``.
    """
    module = model.get_submodule(path)
    for attr in weight_names(module):
        reason = weight_transform(module, attr)
        if reason is not None:
            return f"{_qualified(path, attr)}: {reason}"
    for attr, param in module.named_parameters(recurse=False):
        others = [p for p in owners.get(id(param), []) if p != path]
        if others:
            return f"{_qualified(path, attr)}: tied to {_qualified(others[0], attr)}"
    return None


def _qualified(path: str, attr: str) -> str:
    return f"{path}.{attr}" if path else attr


def parameter_owners(model: nn.Module) -> dict[int, list[str]]:
    """``{id(parameter): qualified names of the distinct layers holding it}``."""
    owners: dict[int, list[str]] = {}
    layers: dict[int, set[int]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        for param in module.parameters(recurse=False):
            if id(module) not in layers.setdefault(id(param), set()):
                layers[id(param)].add(id(module))
                owners.setdefault(id(param), []).append(path)
    return owners


def check_left_dense(any_group: bool, skipped: Mapping[str, str], hint: Callable[[], str]) -> None:
    """Warns about the groups left dense for an unmaskable layer; raises if none is left.

    Args:
        any_group: Whether some channel group can be masked.
        skipped: ``{root layer: why its group is left dense}``.
        hint: The fix to name when no group is left for another reason.

    Raises:
        ValueError: If no group is left, naming the reasons and the fix.
    """
    unusable = {root: why for root, why in skipped.items() if why.startswith(UNUSABLE)}
    if unusable and any_group:
        warnings.warn(
            f"channel damage leaves {len(unusable)} channel group"
            f"{'s' if len(unusable) > 1 else ''} dense: {_listed(unusable)}. {UNUSABLE_FIX}",
            UserWarning,
            stacklevel=2,
        )
    if not any_group:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:8])
        detail = reasons or "no convolution or linear layer was traced"
        fix = UNUSABLE_FIX if unusable else hint()
        raise ValueError(f"model has no prunable channel group ({detail}). {fix}")
