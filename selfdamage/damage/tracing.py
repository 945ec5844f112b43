"""Tracing: a model's coupled channel groups, as plain data.

torch-pruning's dependency graph (read through one private adapter module)
is built once on the bare model, each prunable group is turned into qualified names and
index tensors (:class:`ChannelGroup`), and the graph is dropped, so the result survives
``copy.deepcopy``, pickling and ``.to()``.

- [1] DepGraph, 2023, https://arxiv.org/abs/2301.12900
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from selfdamage._modules import device_of, in_mode
from selfdamage.damage._channel_choice import prunable_hint, resolve_ignored
from selfdamage.damage._example_inputs import call_with, traceable
from selfdamage.damage._scope import is_frozen
from selfdamage.damage._slices import HANDLER_NAMES, Slice, slices_of
from selfdamage.damage._torch_pruning_graph import (
    ROOT_TYPES,
    BudgetedGraph,
    CoupledLayer,
    CouplingBudgetExceeded,
    build_graph,
    traced_groups,
)
from selfdamage.damage._unmaskable import (
    UNUSABLE,
    check_left_dense,
    parameter_owners,
    unusable_weight,
)
from selfdamage.damage.reshapes import unfollowable_reshapes, unsupported_reshapes

__all__ = ["ChannelGroup"]


@dataclass(frozen=True)
class _ScoredLayer:
    """One layer of a group as the importance sees it: rebuilt into a torch-pruning group.

    Attributes:
        module: The layer's qualified name.
        handler: The name of its ``torch_pruning.pruner.function`` handler.
        idxs: The positions of the group's channels in the layer.
        root_idxs: The root channel of each position.
    """

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
    _slices: tuple[Slice, ...] = field(repr=False, compare=False)
    _scored: tuple[_ScoredLayer, ...] = field(repr=False, compare=False)

    @property
    def slices(self) -> tuple[Slice, ...]:
        """Where the group's channels sit in each parameter it masks, one entry each.

        An entry (of an internal class) holds ``param``, the parameter's qualified name;
        ``dim``; ``index``, the positions along ``dim`` of the group's channels; ``root``,
        the group's root channel of each position; ``output``, False for an input slice of
        the next layer; and ``conv_groups``, above 1 for the input slice of a grouped
        convolution.
        """
        return self._slices

    @property
    def scored(self) -> tuple[_ScoredLayer, ...]:
        """The layers an importance scores the group by, one entry each.

        An entry (of an internal class) holds ``module``, the layer's qualified name;
        ``handler``, the name of its ``torch_pruning.pruner.function`` handler; ``idxs``, the
        positions of the group's channels in the layer; and ``root_idxs``, the root channel
        of each position.
        """
        return self._scored


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
    planner = _Planner(model, select, ignored, importance)
    groups, skipped, unselected = planner.plan(example_inputs)
    check_left_dense(bool(groups), skipped, lambda: prunable_hint(model, select, unselected))
    return groups, skipped


def _build_graph(model: nn.Module, example_inputs: Any) -> tuple[BudgetedGraph, set[Any]]:
    """torch-pruning's dependency graph of ``model`` and its output ``grad_fn`` s.

    Three steps, each with its own error: the model runs on ``example_inputs`` (else the
    input is at fault); its autograd graph holds no reshape torch-pruning cannot follow
    (:func:`~selfdamage.damage.reshapes.unfollowable_reshapes`); torch-pruning traces it
    (else its dependency graph is at fault). Tracing runs in eval mode, as torch-pruning
    traces; every module's mode is restored afterwards.
    """
    model_name = type(model).__name__
    with in_mode(model, False):
        inputs = traceable(example_inputs, device_of(model))
        try:
            with torch.enable_grad():
                out = call_with(model, inputs)
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
                return build_graph(model, inputs, call_with)
        except Exception as error:
            raise ValueError(_graph_failure(model_name, error)) from error


@dataclass
class _Verdict:
    """What the layers of one group say about it, gathered layer by layer."""

    reason: str = ""  # the first reason to leave the group dense
    blocked: bool = False  # a reason other than prunable's selection
    rejected: set[type[nn.Module]] = field(default_factory=set)  # types prunable rejects
    slices: list[Slice] = field(default_factory=list)
    scored: list[_ScoredLayer] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)

    def refuse(self, why: str, *, blocked: bool = True) -> None:
        self.reason = self.reason or why
        self.blocked = self.blocked or blocked


class _Planner:
    """Turns every traced group of one model into a :class:`ChannelGroup` or a reason."""

    def __init__(
        self,
        model: nn.Module,
        select: Callable[[str, nn.Module], bool],
        ignored: set[nn.Module],
        importance: Any,
    ) -> None:
        self.model, self.select, self.ignored, self.importance = model, select, ignored, importance
        self.names = {module: name for name, module in model.named_modules()}
        self.position = {module: i for i, module in enumerate(self.names)}
        self.target_types = tuple(getattr(importance, "target_types", ()))
        self.owners = parameter_owners(model)
        self.unusable: dict[str, str | None] = {}

    def plan(
        self, example_inputs: Any
    ) -> tuple[list[ChannelGroup], dict[str, str], dict[str, set[type[nn.Module]]]]:
        """The groups, ``{root: why it is left dense}``, and for every group left dense
        only because ``select`` rejects some of its layers, the types it rejects."""
        graph, output_fns = _build_graph(self.model, example_inputs)
        groups: list[ChannelGroup] = []
        skipped: dict[str, str] = {}
        unselected: dict[str, set[type[nn.Module]]] = {}
        for coupled in self._traced(graph, output_fns):
            root = self.names.get(coupled[0].module, "?")
            verdict = self._judge(coupled)
            if verdict.reason:
                skipped[root] = verdict.reason
                if verdict.rejected and not verdict.blocked:
                    unselected[root] = verdict.rejected
                continue
            layers = tuple(dict.fromkeys(verdict.layers))
            slices, scored = tuple(verdict.slices), tuple(verdict.scored)
            groups.append(ChannelGroup(root, len(coupled[0].idxs), layers, slices, scored))
        order = {name: i for i, name in enumerate(self.names.values())}
        groups.sort(key=lambda g: order.get(g.root, len(order)))
        skipped = dict(sorted(skipped.items(), key=lambda kv: order.get(kv[0], len(order))))
        return groups, skipped, unselected

    def _traced(self, graph: BudgetedGraph, output_fns: set[Any]) -> Iterable[list[CoupledLayer]]:
        """The graph's groups; torch-pruning's failures become errors that name the model."""
        model_name = type(self.model).__name__
        traced = traced_groups(graph, output_fns, self.position)
        while True:
            try:
                coupled = next(traced, None)
            except CouplingBudgetExceeded as error:
                root = self.names.get(error.root, model_name)
                raise ValueError(_no_convergence(root, model_name, graph.limit)) from None
            except Exception as error:
                raise ValueError(_graph_failure(model_name, error)) from error
            if coupled is None:
                return
            yield coupled

    def _judge(self, coupled: list[CoupledLayer]) -> _Verdict:
        """The group's slices and scored layers, or why it is left dense."""
        verdict = _Verdict()
        for layer in coupled:
            self._judge_layer(verdict, layer)
        scored_types = (
            isinstance(self.model.get_submodule(s.module), self.target_types)
            for s in verdict.scored
        )
        if not verdict.blocked and self.target_types and not any(scored_types):
            verdict.refuse(f"{type(self.importance).__name__} scores none of its layers")
        return verdict

    def _judge_layer(self, verdict: _Verdict, layer: CoupledLayer) -> None:
        """Adds one layer's slices to ``verdict``, or the reason it leaves the group dense."""
        if layer.model_output:  # the channels are a model output
            verdict.refuse("model output")
        if layer.parameter:
            verdict.refuse("touches an nn.Parameter outside any layer")
            return
        module = layer.module
        if module not in self.names:  # torch-pruning's parameter-free ops (add, cat, view)
            return
        name = self.names[module]
        if name not in self.unusable:
            self.unusable[name] = unusable_weight(self.model, name, self.owners)
        if self.unusable[name] is not None:
            verdict.refuse(f"{UNUSABLE}{self.unusable[name]}")
            return
        if layer.output:
            self._judge_output(verdict, name, module)
        if not any(True for _ in module.parameters(recurse=False)):
            return
        if layer.root_idxs is None or any(r is None for r in layer.root_idxs):
            verdict.refuse(f"{name} has indices without a root channel")
            return
        found = slices_of(
            name,
            module,
            layer.handler.__self__,  # type: ignore[attr-defined]
            layer.output,
            torch.tensor(layer.idxs, dtype=torch.long),
            torch.tensor(layer.root_idxs, dtype=torch.long),
        )
        if isinstance(found, str):
            verdict.refuse(found)
            return
        verdict.slices.extend(found)
        verdict.layers.append(name)
        if layer.handler in HANDLER_NAMES:
            handler = HANDLER_NAMES[layer.handler]
            root_idxs = tuple(int(r) for r in layer.root_idxs if r is not None)
            verdict.scored.append(_ScoredLayer(name, handler, layer.idxs, root_idxs))

    def _judge_output(self, verdict: _Verdict, name: str, module: nn.Module) -> None:
        """Whether the user lets the group lose the output channels of ``module``."""
        if module in self.ignored:
            verdict.refuse(f"{name} is in ignored_layers")
        if isinstance(module, ROOT_TYPES):
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and is_frozen(weight):
                verdict.refuse(f"{name}'s weight is frozen (requires_grad=False)")
            if not self.select(name, module):
                verdict.refuse(f"{name} is not selected by prunable", blocked=False)
                verdict.rejected.add(type(module))


def _graph_failure(model_name: str, error: BaseException) -> str:
    return (
        f"torch-pruning's dependency graph cannot follow {model_name} for channel-level "
        f"damage ({type(error).__name__}: {error}); the model runs on example_inputs, so "
        "an op it holds is not supported by the dependency graph. Use weight damage "
        "(damage=WeightDamage(prune_ratio)), or wrap a part of the model without that op."
    )


def _no_convergence(root: str, model_name: str, limit: int) -> str:
    return (
        f"channel coupling did not converge for {root} in {model_name}: torch-pruning's "
        f"index lists for this group grew past {limit} entries (128 per channel of its "
        "layers), so it misreads an op of this model. Use weight damage "
        "(damage=WeightDamage(prune_ratio)), or wrap a part of the model without that op."
    )
