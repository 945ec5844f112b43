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
from torch.nn.modules.conv import _ConvNd

__all__ = ["ChannelGroup", "resolve_ignored", "tp_group", "trace_groups"]

# Root layers of channel groups: their output channels define the groups.
_ROOT_TYPES = (_ConvNd, nn.Linear)


@dataclass(frozen=True)
class _Slice:
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
    groups, skipped = _plan_groups(model, example_inputs, select, ignored, importance)
    if not groups:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:8])
        detail = reasons or "no convolution or linear layer was traced"
        raise ValueError(
            f"model has no prunable channel group ({detail}). Check prunable, "
            "ignored_layers and importance."
        )
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

    Tracing puts the model in eval mode; every module's mode is restored afterwards.
    """
    modes = [(m, m.training) for m in model.modules()]
    outputs: list[Any] = []

    def keep_outputs(out: Any) -> Any:
        outputs.extend(tp.utils.flatten_as_list(out))
        return out

    try:
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(
                model,
                example_inputs=_prepare_inputs(model, example_inputs),
                forward_fn=_call,
                output_transform=keep_outputs,
                verbose=False,
            )
    except Exception as error:
        raise ValueError(
            f"could not trace {type(model).__name__} with example_inputs for channel-level "
            f"damage ({type(error).__name__}: {error}). Pass an input the model accepts: a "
            "tensor, a tuple of positional inputs or a dict of keyword inputs."
        ) from error
    finally:
        for module, mode in modes:
            module.training = mode
    return graph, {o.grad_fn for o in outputs if isinstance(o, Tensor) and o.grad_fn is not None}


_HANDLER_NAMES = {
    getattr(tp.pruner.function, n): n for n in dir(tp.pruner.function) if n.startswith("prune_")
}


def _slices_of(
    name: str, module: nn.Module, pruner: Any, is_out: bool, idxs: Tensor, root: Tensor
) -> list[_Slice] | str:
    """The parameter slices a handler names, or why they are unknown."""
    fn = tp.pruner.function

    def both(dim: int, output: bool = True) -> list[_Slice]:
        found = []
        for attr in ("weight", "bias"):
            if isinstance(getattr(module, attr, None), nn.Parameter):
                found.append(_Slice(f"{name}.{attr}", dim, idxs, root, output))
        return found

    if isinstance(pruner, fn.DepthwiseConvPruner):
        return both(0)
    if isinstance(pruner, fn.ConvPruner) and isinstance(module, _ConvNd):
        if module.transposed and module.groups > 1:
            return "grouped transposed convolution"
        if is_out:
            weight_dim = 1 if module.transposed else 0
            found = [_Slice(f"{name}.weight", weight_dim, idxs, root, True)]
            if module.bias is not None:
                found.append(_Slice(f"{name}.bias", 0, idxs, root, True))
            return found
        if module.transposed:
            return [_Slice(f"{name}.weight", 0, idxs, root, False)]
        return [_Slice(f"{name}.weight", 1, idxs, root, False, module.groups)]
    if isinstance(pruner, fn.LinearPruner) and isinstance(module, nn.Linear):
        if is_out:
            return both(0)
        return [_Slice(f"{name}.weight", 1, idxs, root, False)]
    if isinstance(pruner, (fn.BatchnormPruner, fn.GroupNormPruner, fn.InstanceNormPruner)):
        return both(0)
    if isinstance(pruner, fn.LayernormPruner) and isinstance(module, nn.LayerNorm):
        if len(module.normalized_shape) != 1:
            return "LayerNorm over more than one dimension"
        return both(0)
    if isinstance(pruner, fn.PReLUPruner):  # one shared slope has no channel slices
        return both(0) if getattr(module, "num_parameters", 1) > 1 else []
    return f"{type(module).__name__} layers are not supported"


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


def _plan_groups(
    model: nn.Module,
    example_inputs: Any,
    select: Callable[[str, nn.Module], bool],
    ignored: set[nn.Module],
    importance: Any,
) -> tuple[list[ChannelGroup], dict[str, str]]:
    """Traces ``model`` and turns every channel group into plain data."""
    graph, output_fns = _build_graph(model, example_inputs)
    names = {module: name for name, module in model.named_modules()}
    position = {name: i for i, name in enumerate(names.values())}
    target_types = tuple(getattr(importance, "target_types", ()))
    groups: list[ChannelGroup] = []
    skipped: dict[str, str] = {}
    for group in graph.get_all_groups(ignored_layers=[], root_module_types=_ROOT_TYPES):
        group = _reroot(graph, group, names, position)
        root = names.get(group[0].dep.target.module, "?")
        reason = ""
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
            if node.type == tp.ops.OPTYPE.PARAMETER:
                reason = reason or "touches an nn.Parameter outside any layer"
                continue
            if module not in names:  # torch-pruning's parameter-free ops (add, cat, view)
                continue
            name = names[module]
            if is_out and module in ignored:
                reason = reason or f"{name} is in ignored_layers"
            if is_out and isinstance(module, _ROOT_TYPES) and not select(name, module):
                reason = reason or f"{name} is not selected by prunable"
            if not any(True for _ in module.parameters(recurse=False)):
                continue
            if root_idxs is None or any(r is None for r in root_idxs):
                reason = reason or f"{name} has indices without a root channel"
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
                continue
            slices.extend(found)
            layers.append(name)
            if handler in _HANDLER_NAMES:
                scored.append(
                    _ScoredLayer(name, _HANDLER_NAMES[handler], tuple(idxs), tuple(root_idxs))
                )
        if (
            not reason
            and target_types
            and not any(isinstance(model.get_submodule(s.module), target_types) for s in scored)
        ):
            reason = f"{type(importance).__name__} scores none of its layers"
        if reason:
            skipped[root] = reason
            continue
        channels = len(group[0].idxs)
        groups.append(
            ChannelGroup(root, channels, tuple(dict.fromkeys(layers)), tuple(slices), tuple(scored))
        )
    groups.sort(key=lambda g: position.get(g.root, len(position)))
    skipped = dict(sorted(skipped.items(), key=lambda kv: position.get(kv[0], len(position))))
    return groups, skipped
