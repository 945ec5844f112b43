"""The one adapter to torch-pruning's ``DependencyGraph`` [1]: what channel damage reads of it.

Channel damage asks torch-pruning which channels are coupled and nothing else. This module
is the only place that builds or walks its dependency graph; the rest of the package sees
plain data (:class:`CoupledLayer`). What it relies on, pinned by
``tests/damage/test_torch_pruning_graph.py`` (which fails when torch-pruning changes it):

- ``DependencyGraph().build_dependency(model, example_inputs=, forward_fn=,
  output_transform=, verbose=)``; ``get_all_groups(ignored_layers=, root_module_types=)``
  calling ``self.get_pruning_group(module, pruning_fn, idxs)`` for every group;
  ``is_out_channel_pruning_fn``, ``get_pruner_of_module``, ``module2node``.
- A group's items: ``.dep`` (``.target.module``, ``.target.grad_fn``, ``.target.type``,
  ``.handler``, ``.index_mapping``, ``.is_triggered_by``), ``.idxs``, ``.root_idxs``.
- ``get_pruning_group``'s walk, which :class:`BudgetedGraph` repeats step for step with
  a budget: torch-pruning has no hook to bound the index lists a group maps, and on a
  graph it misreads they grow until memory runs out. The pin test asserts that both
  walks give the same groups.

- [1] DepGraph, 2023, https://arxiv.org/abs/2301.12900
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch_pruning as tp
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd
from torch_pruning._helpers import GroupItem, _HybridIndex, to_plain_idxs, to_root_idxs
from torch_pruning.dependency.index_mapping import update_index_mapping

__all__ = [
    "ROOT_TYPES",
    "BudgetedGraph",
    "CoupledLayer",
    "CouplingBudgetExceeded",
    "build_graph",
    "coupling_limit",
    "scoring_group",
    "traced_groups",
]

ROOT_TYPES = (_ConvNd, nn.Linear)
"""Root layers of channel groups: their output channels define the groups."""


def coupling_limit(model: nn.Module) -> int:
    """The budget of one group: 128 entries per channel of the model's convolutions and linears.

    Examples:
        >>> coupling_limit(nn.Sequential(nn.Conv2d(3, 2048, 1), nn.Linear(2048, 10)))
        263424
    """
    channels = sum(
        m.out_channels if isinstance(m, _ConvNd) else m.out_features
        for m in model.modules()
        if isinstance(m, ROOT_TYPES)
    )
    return 128 * max(channels, 1024)


class CouplingBudgetExceeded(RuntimeError):
    """A group's index lists outgrew the budget; ``root`` is the layer the group started at."""

    def __init__(self, root: nn.Module, spent: int) -> None:
        super().__init__(f"{spent} index entries")
        self.root = root
        self.spent = spent


class BudgetedGraph(tp.DependencyGraph):  # type: ignore[misc]
    """torch-pruning's dependency graph whose groups stop at a budget of mapped indices.

    torch-pruning follows every dependency of a root layer and maps its channel indices
    through each op (a flatten multiplies them by its stride). On a graph it misreads,
    the lists can grow to millions of entries per group; a valid group maps each of its
    layers' channels a few times. :meth:`get_pruning_group` is torch-pruning's own walk
    with the entries every dependency maps to counted: past ``limit`` it raises
    :class:`CouplingBudgetExceeded`, long before memory runs out.

    Args:
        limit: Most index entries the dependencies of one group may map to in total.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.most = 0  # the largest total of any group so far

    def get_pruning_group(self, module: nn.Module, pruning_fn: Any, idxs: Sequence[int]) -> Any:
        """The group of ``module``'s channels ``idxs``, as torch-pruning builds it, within budget.

        The group is read, never pruned, so it holds no link back to the graph.

        Raises:
            CouplingBudgetExceeded: If the group's mapped indices outgrow :attr:`limit`.
        """
        if module not in self.module2node:
            raise ValueError(f"Module {module} is not in the dependency graph.")
        if isinstance(module, _ConvNd) and module.groups == module.out_channels > 1:
            pruning_fn = tp.pruner.function.prune_depthwise_conv_out_channels
        update_index_mapping(self)
        group = tp.dependency.Group()
        root = self.module2node[module]
        start = tp.dependency.Dependency(pruning_fn, pruning_fn, source=root, target=root)
        group.add_dep(start, [_HybridIndex(idx=i, root_idx=i) for i in idxs])
        self._follow(group, module)
        merged = tp.dependency.Group()
        for dep, dep_idxs in group.items:
            target = dep.target.module
            if isinstance(target, nn.Parameter) and any(target is p for p in self.ignored_params):
                continue
            merged.add_and_merge(dep, dep_idxs)
        for i in range(len(merged)):
            hybrid = merged[i].idxs
            merged[i] = GroupItem(merged[i].dep, to_plain_idxs(hybrid))
            merged[i].root_idxs = to_root_idxs(hybrid)
        return merged

    def _follow(self, group: Any, module: nn.Module) -> None:
        """Adds every dependency the group's first one triggers, transitively (depth first)."""
        visited = set()
        spent = 0
        stack = [(group[0].dep, group[0].idxs)]
        while stack:
            dep, idxs = stack.pop()
            node, fn = dep.target, dep.handler
            visited.add(node)
            for new_dep in node.dependencies:
                if not new_dep.is_triggered_by(fn):
                    continue
                new_idxs = idxs
                for mapping in new_dep.index_mapping:
                    if mapping is not None:
                        new_idxs = mapping(new_idxs)
                spent += len(new_idxs)
                self.most = max(self.most, spent)
                if spent > self.limit:
                    raise CouplingBudgetExceeded(module, spent)
                if len(new_idxs) == 0:
                    continue
                if new_dep.target in visited and group.has_pruning_op(new_dep, new_idxs):
                    continue
                group.add_dep(new_dep, new_idxs)
                stack.append((new_dep, new_idxs))


@dataclass(frozen=True)
class CoupledLayer:
    """One dependency of a traced group, as channel damage reads it.

    Attributes:
        module: The dependency's target: a layer of the model, one of torch-pruning's
            parameter-free op modules (add, cat, view), or an ``nn.Parameter``.
        handler: torch-pruning's pruning function for it (a pruner's bound method).
        output: Whether the handler prunes output channels.
        model_output: Whether those output channels are a model output.
        parameter: Whether the target is an ``nn.Parameter`` outside any layer.
        idxs: The positions of the group's channels in the target.
        root_idxs: For each position, the root channel it belongs to (None: unknown).
    """

    module: Any
    handler: Callable[..., Any]
    output: bool
    model_output: bool
    parameter: bool
    idxs: tuple[int, ...]
    root_idxs: tuple[int | None, ...] | None


def coupled_layers(graph: BudgetedGraph, group: Any, output_fns: set[Any]) -> list[CoupledLayer]:
    """The items of a torch-pruning group as :class:`CoupledLayer` s, in the group's order."""
    found = []
    for item in group:
        dep = item.dep
        output = bool(graph.is_out_channel_pruning_fn(dep.handler))
        root_idxs = item.root_idxs
        found.append(
            CoupledLayer(
                module=dep.target.module,
                handler=dep.handler,
                output=output,
                model_output=output and dep.target.grad_fn in output_fns,
                parameter=dep.target.type == tp.ops.OPTYPE.PARAMETER,
                idxs=tuple(item.idxs),
                root_idxs=None if root_idxs is None else tuple(root_idxs),
            )
        )
    return found


def traced_groups(
    graph: BudgetedGraph, output_fns: set[Any], position: Mapping[nn.Module, int]
) -> Iterator[list[CoupledLayer]]:
    """Every group of ``graph`` rooted at a convolution or linear, as coupled layers.

    Each group is rooted at its first convolution or linear in module order
    (``position``): torch-pruning roots it at whichever layer its trace met first (for a
    ResNet stage, often the downsample), which would make the group's name unpredictable.

    Raises:
        CouplingBudgetExceeded: If a group's index lists outgrow the graph's budget.
    """
    for group in graph.get_all_groups(ignored_layers=[], root_module_types=ROOT_TYPES):
        yield coupled_layers(graph, _reroot(graph, group, position), output_fns)


def _reroot(graph: BudgetedGraph, group: Any, position: Mapping[nn.Module, int]) -> Any:
    outputs = [
        dep.target.module
        for dep, _ in group
        if graph.is_out_channel_pruning_fn(dep.handler)
        and isinstance(dep.target.module, ROOT_TYPES)
        and dep.target.module in position
    ]
    if not outputs:
        return group
    first = min(outputs, key=lambda m: position[m])
    if first is group[0].dep.target.module:
        return group
    pruner = graph.get_pruner_of_module(first)
    channels = pruner.get_out_channels(first)
    return graph.get_pruning_group(first, pruner.prune_out_channels, list(range(channels)))


def build_graph(
    model: nn.Module, inputs: Any, call: Callable[[nn.Module, Any], Any]
) -> tuple[BudgetedGraph, set[Any]]:
    """torch-pruning's traced graph of ``model`` (budget :func:`coupling_limit`), and the
    ``grad_fn`` s of its outputs.

    Args:
        model: The model, in the mode to trace it in.
        inputs: Its inputs, floating ones requiring grad.
        call: ``call(model, inputs)`` runs the model.
    """
    outputs: list[Any] = []

    def keep_outputs(out: Any) -> Any:
        outputs.extend(tp.utils.flatten_as_list(out))
        return out

    graph = BudgetedGraph(coupling_limit(model)).build_dependency(
        model, example_inputs=inputs, forward_fn=call, output_transform=keep_outputs, verbose=False
    )
    return graph, {o.grad_fn for o in outputs if isinstance(o, Tensor) and o.grad_fn is not None}


def scoring_group(
    layers: Iterable[tuple[str, nn.Module, str, Sequence[int], Sequence[int]]],
) -> Any:
    """A torch-pruning ``Group`` for an importance to score, built without a graph.

    Args:
        layers: Per layer ``(qualified name, module, name of its
            torch_pruning.pruner.function handler, indices, root indices)``; the group
            gets fresh index lists (importances may sort them in place).
    """
    group = tp.dependency.Group()
    for name, module, handler_name, idxs, root_idxs in layers:
        handler = getattr(tp.pruner.function, handler_name)
        node = tp.dependency.Node(module=module, grad_fn=None, name=name)
        dep = tp.dependency.Dependency(handler, handler, source=node, target=node)
        group.add_dep(dep, list(idxs))
        group[len(group) - 1].root_idxs = list(root_idxs)
    return group
