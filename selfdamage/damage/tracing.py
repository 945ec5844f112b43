"""Tracing with torch-pruning: a model's coupled channel groups, as plain data.

The only module that touches torch-pruning's ``DependencyGraph`` internals. The graph is
built once on the bare model, each prunable group is turned into qualified names and
index tensors (:class:`ChannelGroup`), and the graph is dropped, so the result survives
``copy.deepcopy``, pickling and ``.to()``.

- [1] DepGraph, 2023, https://arxiv.org/abs/2301.12900
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn

from selfdamage.damage.scope import is_frozen
from selfdamage.damage.slices import HANDLER_NAMES as _HANDLER_NAMES
from selfdamage.damage.slices import Slice as _Slice
from selfdamage.damage.slices import slices_of as _slices_of
from selfdamage.damage.traceability import (
    ROOT_TYPES,
    coupling_limit,
    graph_failure,
    no_convergence,
    prunable_hint,
    resolve_ignored,
    unfollowable_reshapes,
    unsupported_reshapes,
)
from selfdamage.damage.unmaskable import (
    UNUSABLE,
    check_left_dense,
    parameter_owners,
    unusable_weight,
)

__all__ = [
    "ChannelGroup",
    "resolve_ignored",
    "tp_group",
    "trace_groups",
    "unfollowable_reshapes",
]

_ROOT_TYPES = ROOT_TYPES


@dataclass(frozen=True)
class _ScoredLayer:
    """One layer of a group as the importance sees it: rebuilt into a tp ``Group``."""

    module: str
    handler: str
    idxs: tuple[int, ...]
    root_idxs: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """One group of coupled channels that the twin loses together.

    Attributes:
        root: Qualified name of the layer whose output channels define the group.
        channels: Number of channels in the group.
        layers: Qualified names of every layer with parameters the group masks.
    """

    root: str
    channels: int
    layers: tuple[str, ...]
    _slices: tuple[_Slice, ...] = field(repr=False, compare=False)
    _scored: tuple[_ScoredLayer, ...] = field(repr=False, compare=False)


def tp_group(model: nn.Module, group: ChannelGroup) -> Any:
    """A torch-pruning ``Group`` with full indices over ``model``'s layers, for scoring."""
    out = tp.dependency.Group()
    for layer in group._scored:
        module = model.get_submodule(layer.module)
        handler = getattr(tp.pruner.function, layer.handler)
        node = tp.dependency.Node(module=module, grad_fn=None, name=layer.module)
        dep = tp.dependency.Dependency(handler, handler, source=node, target=node)
        out.add_dep(dep, list(layer.idxs))  # fresh lists: importances may sort in place
        out[len(out) - 1].root_idxs = list(layer.root_idxs)
    return out


def trace_groups(
    model: nn.Module,
    example_inputs: Any,
    *,
    select: Callable[[str, nn.Module], bool],
    ignored_layers: Iterable[nn.Module | str] | None,
    importance: Any,
) -> tuple[list[ChannelGroup], dict[str, str]]:
    """Traces ``model`` once and returns its prunable channel groups and the skipped ones.

    A group is pruned only if none of its layers' outputs is excluded: its output layers
    are neither in ``ignored_layers`` nor convolutions or linears that ``select`` rejects;
    its channels are not a model output; every parameterised layer in it has known
    channel slices; and ``importance`` can score it.

    Args:
        model: The bare model; every module's train/eval mode is restored afterwards.
        example_inputs: A tensor, a tuple of positional inputs or a dict of keyword inputs.
        select: Predicate for the convolutions and linears whose outputs may be pruned.
        ignored_layers: Modules (or qualified names) whose output channels are never pruned.
        importance: The torch-pruning importance that will score the groups.

    Returns:
        The groups in module order, and ``{root layer: why it is left dense}``.

    Raises:
        ValueError: If tracing fails, an ignored layer is not part of the model, or no
            group is prunable.
    """
    ignored = resolve_ignored(model, ignored_layers)
    groups, skipped, unselected = _plan_groups(model, example_inputs, select, ignored, importance)
    check_left_dense(bool(groups), skipped, lambda: prunable_hint(model, select, unselected))
    return groups, skipped


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _prepare_inputs(model: nn.Module, example_inputs: Any) -> Any:
    """Example inputs on the model's device; float tensors require grad for tracing."""
    device = next((p.device for p in model.parameters()), None)

    def prepare(x: Any) -> Any:
        if isinstance(x, Tensor):
            x = x.detach().to(device) if device is not None else x.detach()
            return x.requires_grad_(True) if x.is_floating_point() else x
        if isinstance(x, dict):
            return {k: prepare(v) for k, v in x.items()}
        if isinstance(x, (tuple, list)):
            return type(x)(prepare(v) for v in x)
        return x

    return prepare(example_inputs)


def _build_graph(model: nn.Module, example_inputs: Any) -> tuple[Any, set[Any]]:
    """torch-pruning's dependency graph of ``model`` and its output ``grad_fn`` s.

    Three steps, each with its own error: the model runs on ``example_inputs`` (else the
    input is at fault); its autograd graph holds no reshape torch-pruning cannot follow
    (:func:`unfollowable_reshapes`); torch-pruning traces it (else its dependency graph
    is at fault). Tracing puts the model in eval mode; every module's mode is restored
    afterwards.
    """
    modes = [(m, m.training) for m in model.modules()]
    outputs: list[Any] = []
    model_name = type(model).__name__

    def keep_outputs(out: Any) -> Any:
        outputs.extend(tp.utils.flatten_as_list(out))
        return out

    try:
        model.eval()  # as torch-pruning traces
        inputs = _prepare_inputs(model, example_inputs)
        try:
            with torch.enable_grad():
                out = _call(model, inputs)
        except Exception as error:
            raise ValueError(
                f"could not trace {model_name} with example_inputs for channel-level damage: "
                f"it does not run on them ({type(error).__name__}: {error}). Pass an input "
                "the model accepts: a tensor, a tuple of positional inputs or a dict of "
                "keyword inputs."
            ) from error
        reshapes = unfollowable_reshapes(out)
        del out
        if reshapes:
            raise ValueError(unsupported_reshapes(model_name, reshapes))
        try:
            with torch.enable_grad():
                graph = tp.DependencyGraph().build_dependency(
                    model,
                    example_inputs=inputs,
                    forward_fn=_call,
                    output_transform=keep_outputs,
                    verbose=False,
                )
        except Exception as error:
            raise ValueError(graph_failure(model_name, error)) from error
    finally:
        for module, mode in modes:
            module.training = mode
    return graph, {o.grad_fn for o in outputs if isinstance(o, Tensor) and o.grad_fn is not None}


def _reroot(graph: Any, group: Any, names: Mapping[Any, str], position: Mapping[str, int]) -> Any:
    """The same group, rooted at its first convolution or linear in module order.

    torch-pruning roots a group at whichever layer its trace met first (for a ResNet
    stage, often the downsample); rooting at the first layer makes the group's name
    predictable (``conv1`` for the stem's residual stream).
    """
    outputs = [
        dep.target.module
        for dep, _ in group
        if graph.is_out_channel_pruning_fn(dep.handler)
        and isinstance(dep.target.module, _ROOT_TYPES)
        and dep.target.module in names
    ]
    if not outputs:
        return group
    first = min(outputs, key=lambda m: position[names[m]])
    if first is group[0].dep.target.module:
        return group
    pruner = graph.get_pruner_of_module(first)
    channels = pruner.get_out_channels(first)
    return graph.get_pruning_group(first, pruner.prune_out_channels, list(range(channels)))


class _CouplingError(RuntimeError):
    """Raised inside torch-pruning when a group's index lists outgrow :class:`_CouplingBudget`."""


class _CouplingBudget:
    """A cap on the channel indices torch-pruning maps while it builds one group.

    torch-pruning follows every dependency of a root layer and maps its channel indices
    through each op (a flatten multiplies them by its stride). On a graph it misreads,
    the lists can grow to millions of entries per group and exhaust memory; a valid group
    maps each of its layers' channels a few times. Counting the entries every mapping
    returns, per root layer, turns that into an error, long before memory runs out.

    Args:
        limit: Most index entries the mappings of one group may return in total.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.root: nn.Module | None = None
        self.spent = 0
        self.most = 0  # the largest total of any group so far

    def install(self, graph: Any) -> None:
        """Counts every index mapping of ``graph``, per call of ``get_pruning_group``."""
        get_pruning_group = graph.get_pruning_group

        def counted(module: nn.Module, pruning_fn: Any, idxs: Any) -> Any:
            self.root, self.spent = module, 0
            return get_pruning_group(module, pruning_fn, idxs)

        graph.get_pruning_group = counted  # shadows the method on this graph only
        for node in graph.module2node.values():
            for dep in node.dependencies:
                dep.index_mapping = _CountedMappings(dep.index_mapping, self)

    def spend(self, entries: int) -> None:
        self.spent += entries
        self.most = max(self.most, self.spent)
        if self.spent > self.limit:
            raise _CouplingError(self.spent)


class _CountedMappings(list):  # type: ignore[type-arg]
    """A dependency's index mappings; iterating them counts the indices they map to.

    torch-pruning assigns ``index_mapping[i]`` afresh before every group and, for every
    dependency it follows, maps the indices through the list's entries (None: unchanged)
    and adds the result to the group. The last entry is yielded wrapped, so that the
    budget counts every dependency's indices once; the stored entries stay its own.
    """

    def __init__(self, mappings: Iterable[Any], budget: _CouplingBudget) -> None:
        super().__init__(mappings)
        self._budget = budget

    def __iter__(self) -> Any:
        last = len(self) - 1
        for i, mapping in enumerate(super().__iter__()):
            yield _counted(mapping, self._budget) if i == last else mapping


def _counted(mapping: Callable[[Any], Any] | None, budget: _CouplingBudget) -> Callable[[Any], Any]:
    def call(idxs: Any) -> Any:
        out = idxs if mapping is None else mapping(idxs)
        budget.spend(len(out))
        return out

    return call


def _plan_groups(
    model: nn.Module,
    example_inputs: Any,
    select: Callable[[str, nn.Module], bool],
    ignored: set[nn.Module],
    importance: Any,
) -> tuple[list[ChannelGroup], dict[str, str], dict[str, set[type[nn.Module]]]]:
    """Traces ``model`` and turns every channel group into plain data.

    Returns:
        The groups, ``{root: why it is left dense}``, and for every group left dense
        only because ``select`` rejects some of its layers, the types it rejects.
    """
    graph, output_fns = _build_graph(model, example_inputs)
    names = {module: name for name, module in model.named_modules()}
    position = {name: i for i, name in enumerate(names.values())}
    target_types = tuple(getattr(importance, "target_types", ()))
    groups: list[ChannelGroup] = []
    skipped: dict[str, str] = {}
    unselected: dict[str, set[type[nn.Module]]] = {}
    owners = parameter_owners(model)
    unusable: dict[str, str | None] = {}
    budget = _CouplingBudget(coupling_limit(model))
    budget.install(graph)
    traced = iter(graph.get_all_groups(ignored_layers=[], root_module_types=_ROOT_TYPES))
    while True:
        try:
            group = next(traced, None)
            if group is None:
                break
            group = _reroot(graph, group, names, position)
        except _CouplingError:
            root_name = names.get(budget.root, type(model).__name__)  # type: ignore[arg-type]
            message = no_convergence(root_name, type(model).__name__, budget.limit)
            raise ValueError(message) from None
        except Exception as error:
            raise ValueError(graph_failure(type(model).__name__, error)) from error
        root = names.get(group[0].dep.target.module, "?")
        reason = other = ""
        rejected: set[type[nn.Module]] = set()
        slices: list[_Slice] = []
        scored: list[_ScoredLayer] = []
        layers: list[str] = []
        for item in group:
            dep, idxs, root_idxs = item.dep, item.idxs, item.root_idxs
            node, handler = dep.target, dep.handler
            module = node.module
            is_out = graph.is_out_channel_pruning_fn(handler)
            if is_out and node.grad_fn in output_fns:  # the channels are a model output
                reason = reason or "model output"
                other = other or reason
            if node.type == tp.ops.OPTYPE.PARAMETER:
                reason = reason or "touches an nn.Parameter outside any layer"
                other = other or reason
                continue
            if module not in names:  # torch-pruning's parameter-free ops (add, cat, view)
                continue
            name = names[module]
            if name not in unusable:
                unusable[name] = unusable_weight(model, name, owners)
            if unusable[name] is not None:
                reason = reason or f"{UNUSABLE}{unusable[name]}"
                other = other or reason
                continue
            if is_out and module in ignored:
                reason = reason or f"{name} is in ignored_layers"
                other = other or reason
            if is_out and isinstance(module, _ROOT_TYPES):
                weight = getattr(module, "weight", None)
                if isinstance(weight, nn.Parameter) and is_frozen(weight):
                    reason = reason or f"{name}'s weight is frozen (requires_grad=False)"
                    other = other or reason
                if not select(name, module):
                    reason = reason or f"{name} is not selected by prunable"
                    rejected.add(type(module))
            if not any(True for _ in module.parameters(recurse=False)):
                continue
            if root_idxs is None or any(r is None for r in root_idxs):
                reason = reason or f"{name} has indices without a root channel"
                other = other or reason
                continue
            found = _slices_of(
                name,
                module,
                handler.__self__,
                is_out,
                torch.tensor(idxs, dtype=torch.long),
                torch.tensor(root_idxs, dtype=torch.long),
            )
            if isinstance(found, str):
                reason = reason or found
                other = other or reason
                continue
            slices.extend(found)
            layers.append(name)
            if handler in _HANDLER_NAMES:
                scored.append(
                    _ScoredLayer(name, _HANDLER_NAMES[handler], tuple(idxs), tuple(root_idxs))
                )
        if (
            not other
            and target_types
            and not any(isinstance(model.get_submodule(s.module), target_types) for s in scored)
        ):
            other = f"{type(importance).__name__} scores none of its layers"
            reason = reason or other
        if reason:
            skipped[root] = reason
            if rejected and not other:
                unselected[root] = rejected
            continue
        channels = len(group[0].idxs)
        groups.append(
            ChannelGroup(root, channels, tuple(dict.fromkeys(layers)), tuple(slices), tuple(scored))
        )
    groups.sort(key=lambda g: position.get(g.root, len(position)))
    skipped = dict(sorted(skipped.items(), key=lambda kv: position.get(kv[0], len(position))))
    return groups, skipped, unselected
