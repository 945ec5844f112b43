"""What channel damage can trace and prune, decided without torch-pruning's graph.

The checks and messages around :mod:`selfdamage.damage.tracing`: reshapes its dependency
graph cannot follow (read from the autograd graph PyTorch records), the layers left out
(ignored), the budget on a group's index lists, and the ``prunable`` that would
make a model's groups prunable. Nothing here touches the dependency graph.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch_pruning as tp
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

__all__ = [
    "MAX_RESHAPE_RANK",
    "ROOT_TYPES",
    "coupling_limit",
    "graph_failure",
    "no_convergence",
    "prunable_hint",
    "resolve_ignored",
    "unfollowable_reshapes",
    "unsupported_reshapes",
]

ROOT_TYPES = (_ConvNd, nn.Linear)
"""Root layers of channel groups: their output channels define the groups."""

MAX_RESHAPE_RANK = 4
"""torch-pruning 1.6 maps channel indices through reshapes of 2-d to 4-d tensors only."""


def unfollowable_reshapes(output: Any) -> Counter[int]:
    """How many view/reshape ops of ``output`` 's autograd graph take a tensor above 4-d.

    torch-pruning treats any such op as a flatten (its own rank check reads a ``grad_fn``
    attribute that PyTorch 2.x renamed, so it never runs): a channel shuffle's 5-d view
    then infers 0 channels downstream (a ``ZeroDivisionError``), a window partition's 6-d
    views make index lists of millions of entries. Counted on the graph PyTorch recorded,
    before torch-pruning runs.

    Args:
        output: A model output with autograd history: a tensor or nested containers.

    Returns:
        ``{input rank: number of view/reshape ops}`` for input ranks above 4.

    Examples:
        >>> import torch
        >>> x = torch.randn(2, 4, 3, 3, requires_grad=True)
        >>> shuffled = x.view(2, 2, 2, 3, 3).transpose(1, 2).reshape(2, 4, 3, 3)
        >>> dict(unfollowable_reshapes(shuffled))
        {5: 1}
    """
    ranks: Counter[int] = Counter()
    stack = [t.grad_fn for t in tp.utils.flatten_as_list(output) if isinstance(t, Tensor)]
    seen: set[int] = set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        name = fn.name().lower()
        if "view" in name or "reshape" in name:  # torch-pruning's own test for a reshape
            sizes = getattr(fn, "_saved_self_sym_sizes", getattr(fn, "_saved_self_sizes", None))
            if sizes is not None and len(sizes) > MAX_RESHAPE_RANK:
                ranks[len(sizes)] += 1
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return ranks


def _describe_ranks(ranks: Counter[int]) -> str:
    """``"16 reshapes of 5-d tensors"``, ``"1 reshape of a 5-d tensor and 24 ..."``."""
    return " and ".join(
        f"{n} reshapes of {rank}-d tensors" if n > 1 else f"1 reshape of a {rank}-d tensor"
        for rank, n in sorted(ranks.items())
    )


def graph_failure(model_name: str, error: BaseException) -> str:
    return (
        f"torch-pruning's dependency graph cannot follow {model_name} for channel-level "
        f"damage ({type(error).__name__}: {error}); the model runs on example_inputs, so "
        "an op it holds is not supported by the dependency graph. Use weight damage "
        "(damage=WeightDamage(prune_ratio)), or wrap a part of the model without that op."
    )


def prunable_hint(
    model: nn.Module,
    select: Callable[[str, nn.Module], bool],
    unselected: Mapping[str, set[type[nn.Module]]],
) -> str:
    """How to fix "no prunable group": the ``prunable`` that would make groups prunable."""
    if not unselected:
        return "Check prunable, ignored_layers and importance."
    missing = set().union(*unselected.values())
    chosen = {
        type(m)
        for name, m in model.named_modules()
        if isinstance(m, ROOT_TYPES) and select(name, m)
    }
    suggested = [_type_name(t) for t in sorted(chosen | missing, key=_type_name)]
    spelled = f"({suggested[0]},)" if len(suggested) == 1 else f"({', '.join(suggested)})"
    count = len(unselected)
    return (
        f"prunable must also select {', '.join(sorted(_type_name(t) for t in missing))} here: "
        f"prunable={spelled} would make {count} channel group{'s' if count > 1 else ''} "
        "prunable (rooted at or coupled to those layers). Or check ignored_layers and "
        "importance."
    )


def _type_name(t: type) -> str:
    return f"nn.{t.__name__}" if getattr(nn, t.__name__, None) is t else t.__qualname__


def coupling_limit(model: nn.Module) -> int:
    """The budget of one group: 128 entries per channel of the model's convolutions and linears."""
    channels = sum(
        m.out_channels if isinstance(m, _ConvNd) else m.out_features
        for m in model.modules()
        if isinstance(m, ROOT_TYPES)
    )
    return 128 * max(channels, 1024)


def unsupported_reshapes(model_name: str, reshapes: Counter[int]) -> str:
    """The error for a model with reshapes above :data:`MAX_RESHAPE_RANK`."""
    return (
        f"channel damage does not support {model_name}: {_describe_ranks(reshapes)} (as in "
        "a channel shuffle or a window attention) that torch-pruning's dependency graph "
        f"cannot follow: it maps channels through reshapes of at most {MAX_RESHAPE_RANK}-d "
        "tensors and would couple the wrong channels. Use weight damage "
        "(damage=WeightDamage(prune_ratio)), or wrap a part of the model without these "
        "reshapes."
    )


def no_convergence(root: str, model_name: str, limit: int) -> str:
    """The error when a group's index lists outgrow :func:`coupling_limit`."""
    return (
        f"channel coupling did not converge for {root} in {model_name}: torch-pruning's "
        f"index lists for this group grew past {limit} entries (128 per channel of its "
        "layers), so it misreads an op of this model. Use weight damage "
        "(damage=WeightDamage(prune_ratio)), or wrap a part of the model without that op."
    )


def resolve_ignored(
    model: nn.Module, ignored_layers: Iterable[nn.Module | str] | None
) -> set[nn.Module]:
    if ignored_layers is None:
        return set()
    if isinstance(ignored_layers, (nn.Module, str)):
        raise TypeError(
            "ignored_layers must be a list of modules or qualified names, got a single "
            f"{type(ignored_layers).__name__}; wrap it in a list: ignored_layers=[...]."
        )
    members = {id(m) for m in model.modules()}
    ignored: set[nn.Module] = set()
    for layer in ignored_layers:
        if isinstance(layer, str):
            try:
                module = model.get_submodule(layer)
            except AttributeError as error:
                raise ValueError(
                    f"ignored_layers names {layer!r}, which is not a submodule of "
                    f"{type(model).__name__}. Use qualified names from model.named_modules()."
                ) from error
        elif isinstance(layer, nn.Module):
            if id(layer) not in members:
                raise ValueError(
                    f"ignored_layers holds a {type(layer).__name__} that is not part of the "
                    "wrapped model. Pass submodules of the model itself (e.g. model.fc)."
                )
            module = layer
        else:
            raise TypeError(
                "ignored_layers must hold nn.Module instances or qualified names, got "
                f"{type(layer).__name__}: {layer!r}."
            )
        ignored.update(module.modules())
    return ignored
