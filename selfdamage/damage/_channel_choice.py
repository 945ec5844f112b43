"""Which layers' channels the user lets channel damage prune: ``ignored_layers`` and ``prunable``.

:func:`resolve_ignored` turns ``ignored_layers`` into the modules it names (and checks
them); :func:`prunable_hint` says, when no channel group is prunable, which ``prunable``
would make some prunable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from torch import nn

from selfdamage.damage._torch_pruning_graph import ROOT_TYPES

__all__ = ["prunable_hint", "resolve_ignored"]


def resolve_ignored(
    model: nn.Module, ignored_layers: Iterable[nn.Module | str] | None
) -> set[nn.Module]:
    """The modules ``ignored_layers`` names, with all their submodules.

    Raises:
        TypeError: If ``ignored_layers`` is a single module or name, or holds anything else.
        ValueError: If it names a module that is not part of ``model``.

    Examples:
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU()))
        >>> len(resolve_ignored(model, ["1"])), resolve_ignored(model, None)
        (2, set())
    """
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
        ignored.update(_ignored_module(model, members, layer).modules())
    return ignored


def _ignored_module(model: nn.Module, members: set[int], layer: object) -> nn.Module:
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError as error:
            raise ValueError(
                f"ignored_layers names {layer!r}, which is not a submodule of "
                f"{type(model).__name__}. Use qualified names from model.named_modules()."
            ) from error
    if isinstance(layer, nn.Module):
        if id(layer) not in members:
            raise ValueError(
                f"ignored_layers holds a {type(layer).__name__} that is not part of the "
                "wrapped model. Pass submodules of the model itself (e.g. model.fc)."
            )
        return layer
    raise TypeError(
        "ignored_layers must hold nn.Module instances or qualified names, got "
        f"{type(layer).__name__}: {layer!r}."
    )


def prunable_hint(
    model: nn.Module,
    select: Callable[[str, nn.Module], bool],
    unselected: Mapping[str, set[type[nn.Module]]],
) -> str:
    """How to fix "no prunable group": the ``prunable`` that would make groups prunable.

    Args:
        model: The bare model.
        select: The predicate ``prunable`` gives.
        unselected: For every group left dense only because ``select`` rejects some of
            its layers, the types it rejects.

    Examples:
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))
        >>> print(prunable_hint(model, lambda n, m: isinstance(m, nn.Conv2d), {"0": {nn.Linear}}))
        ... # doctest: +NORMALIZE_WHITESPACE
        prunable must also select nn.Linear here: prunable=(nn.Conv2d, nn.Linear) would make
        1 channel group prunable (rooted at or coupled to those layers). Or check
        ignored_layers and importance.
    """
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
