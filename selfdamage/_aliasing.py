"""Tensors reachable under several names: shared submodules and tied weights.

A submodule registered twice (``self.block = nn.Sequential(self.conv)``, timm's CoaT
sharing its convolutional position encodings between blocks) puts one ``(module,
attribute)`` slot under two qualified names; tied weights (``head.weight =
embed.weight``) put one tensor in two slots. ``torch.func.functional_call`` swaps every
given name's slot in turn and swaps them back in the same order; with
``tie_weights=True`` it first adds every other name of each given tensor. When two names
lead to one slot, the second swap records the first substitute as the original, and the
swap back leaves that substitute, a plain tensor, in the dense model
(pytorch/pytorch#164759). The twin therefore goes through :func:`call_per_slot`: each
slot once, under its first name, each tied slot with the value of its tensor's first name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["Aliases", "call_per_slot", "find_aliases"]


@dataclass(frozen=True)
class Aliases:
    """Where a model's parameters and buffers are reachable under more than one name.

    Attributes:
        canonical: Every qualified name of every parameter and buffer, aliases included,
            mapped to the tensor's first name (the one ``named_parameters()`` and
            ``named_buffers()`` yield).
        tied: ``{first name: other slots' names}`` for each tensor held in more than one
            ``(module, attribute)`` slot (tied weights); a submodule reachable under two
            names is one slot and is not listed.
    """

    canonical: dict[str, str]
    tied: dict[str, tuple[str, ...]]


def find_aliases(model: nn.Module) -> Aliases:
    """The names under which ``model``'s parameters and buffers are reachable.

    Examples:
        >>> conv = nn.Conv2d(1, 2, 3)
        >>> model = nn.Sequential(conv, nn.Sequential(conv))
        >>> find_aliases(model).canonical["1.0.weight"]
        '0.weight'
        >>> find_aliases(model).tied
        {}
        >>> embed, head = nn.Embedding(5, 2), nn.Linear(2, 5, bias=False)
        >>> head.weight = embed.weight
        >>> find_aliases(nn.ModuleDict({"embed": embed, "head": head})).tied
        {'embed.weight': ('head.weight',)}
    """
    canonical: dict[str, str] = {}
    first_of_tensor: dict[int, str] = {}
    seen_slots: set[tuple[int, str]] = set()
    tied: dict[str, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        own = [
            *module.named_parameters(recurse=False, remove_duplicate=False),
            *module.named_buffers(recurse=False, remove_duplicate=False),
        ]
        for attr, tensor in own:
            name = f"{path}.{attr}" if path else attr
            first = first_of_tensor.setdefault(id(tensor), name)
            canonical[name] = first
            slot = (id(module), attr)
            if slot in seen_slots:
                continue
            seen_slots.add(slot)
            if first != name:
                tied.setdefault(first, []).append(name)
    return Aliases(canonical, {name: tuple(others) for name, others in tied.items()})


def call_per_slot(
    model: nn.Module,
    tensors: Mapping[str, Tensor],
    tied: Mapping[str, tuple[str, ...]],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Any:
    """``functional_call`` that substitutes each ``(module, attribute)`` slot exactly once.

    Args:
        model: The module to run.
        tensors: Substitutes by first name (:attr:`Aliases.canonical`'s values).
        tied: :attr:`Aliases.tied` of ``model``: the tied slots get their tensor's
            substitute too.
        args: The call's positional inputs.
        kwargs: The call's keyword inputs.

    Returns:
        Whatever the model returns.

    Examples:
        >>> import torch
        >>> conv = nn.Conv2d(1, 1, 1, bias=False)
        >>> model = nn.Sequential(conv, nn.Sequential(conv))
        >>> out = call_per_slot(model, {"0.weight": torch.zeros(1, 1, 1, 1)}, {},
        ...                     (torch.ones(1, 1, 2, 2),), {})
        >>> out.abs().sum().item(), type(conv.weight).__name__
        (0.0, 'Parameter')
    """
    given = dict(tensors)
    for first, others in tied.items():
        value = given.get(first)
        if value is not None:
            for other in others:
                given[other] = value
    return functional_call(model, given, args, dict(kwargs), tie_weights=False, strict=False)
