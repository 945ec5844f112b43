"""The compact twin's copy of the model: made of ``meta`` placeholders, resized from masks.

What :class:`~selfdamage.damage.compact.CompactTwin` runs: a deep copy of the model whose
parameters and buffers are ``meta`` tensors (:func:`meta_copy`), its channel-count
attributes set for the kept channels (:func:`resize`, from :func:`plan_gather`), its output
shapes checked on ``meta`` inputs (:func:`output_shapes`), and the channel groups that must
stay at full size (:func:`find_protected`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils.weight_norm import WeightNorm
from torch.utils._pytree import tree_leaves  # PyTorch has no public walker of nested outputs

from selfdamage._modules import forward_pre_hooks, in_mode
from selfdamage.damage._example_inputs import batch_of_two, call_with
from selfdamage.damage.tracing import ChannelGroup

__all__ = [
    "CompactUnsupported",
    "Gather",
    "computed_weights",
    "find_protected",
    "meta_copy",
    "output_shapes",
    "plan_gather",
    "resize",
    "same_structure",
]

Gather = dict[str, tuple[tuple[int, Tensor], ...]]
"""Per parameter: ``((dim, kept indices), ...)`` for each dimension that loses entries."""


class CompactUnsupported(Exception):
    """The copy cannot be made; the message names the reason."""


def computed_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, name)`` of each weight ``torch.nn.utils.weight_norm`` computes (a plain
    attribute, recomputed before every forward)."""
    return [
        (module, hook.name)
        for module in model.modules()
        for hook in forward_pre_hooks(module)
        if isinstance(hook, WeightNorm)
    ]


def same_structure(model: nn.Module, copy_: nn.Module) -> bool:
    """Whether the copy still has the model's module types and tensor dtypes.

    False after ``nn.SyncBatchNorm.convert_sync_batchnorm``, ``.half()``, ``.double()``
    and the like on the model: the copy must then be made again.
    """

    def signature(root: nn.Module) -> list[tuple[type, list[torch.dtype]]]:
        return [
            (type(m), [t.dtype for t in (*m.parameters(False), *m.buffers(False))])
            for m in root.modules()
        ]

    return signature(model) == signature(copy_)


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are ``meta`` placeholders.

    So is each weight that ``torch.nn.utils.weight_norm`` computed (a plain attribute,
    recomputed before every forward), which ``copy.deepcopy`` rejects while it carries a
    graph.
    """
    memo: dict[int, Any] = {}
    computed = [getattr(module, name) for module, name in computed_weights(model)]
    for tensor in [*model.parameters(), *model.buffers(), *computed]:
        placeholder = torch.empty(tensor.shape, dtype=tensor.dtype, device="meta")
        memo[id(tensor)] = (
            nn.Parameter(placeholder, tensor.requires_grad)
            if isinstance(tensor, nn.Parameter)
            else placeholder
        )
    try:
        return copy.deepcopy(model, memo)
    except Exception as error:
        raise CompactUnsupported(
            f"the model cannot be deep-copied ({type(error).__name__}: {error})"
        ) from error


def output_shapes(copy_: nn.Module, example: Any) -> list[torch.Size]:
    """Shapes of the copy's outputs on the meta example, in eval and train mode (modes restored).

    Both modes, since a model may take another path in training (GoogLeNet's auxiliary
    heads run only then). The train-mode pass runs on :func:`batch_of_two` of the example:
    BatchNorm refuses to train on one value per channel, which a batch-1 example gives
    after global pooling, and the check must not depend on the example's batch size.
    """
    shapes: list[torch.Size] = []
    try:
        for training in (False, True):
            with in_mode(copy_, training):
                out = call_with(copy_, batch_of_two(example) if training else example)
            shapes += [leaf.shape for leaf in tree_leaves(out) if isinstance(leaf, Tensor)]
    except Exception as error:
        raise CompactUnsupported(
            f"the compact copy cannot run ({type(error).__name__}: {error})"
        ) from error
    return shapes


def grouped_conv(module: nn.Module) -> bool:
    """A grouped convolution that is not depthwise (its channels cannot be cut unevenly)."""
    if not isinstance(module, _ConvNd) or module.groups == 1:
        return False
    return not (module.groups == module.in_channels == module.out_channels)


def find_protected(
    model: nn.Module, copy_: nn.Module, groups: Sequence[ChannelGroup], example: Any
) -> dict[str, str]:
    """Groups kept at full size in the copy, ``{root: why}``; found once.

    A group is protected if it touches a grouped (not depthwise) convolution, or if
    removing one of its channels changes the output shapes or breaks the forward pass
    (checked on ``meta`` tensors, one group at a time).
    """
    expected = output_shapes(copy_, example)
    protected: dict[str, str] = {}
    for i, group in enumerate(groups):
        grouped = [n for n in group.layers if grouped_conv(model.get_submodule(n))]
        if grouped:
            protected[group.root] = f"grouped convolution {grouped[0]}"
            continue
        dead: list[Tensor | None] = [None] * len(groups)
        dead[i] = torch.zeros(group.channels, dtype=torch.bool)
        dead[i][0] = True  # type: ignore[index]
        try:
            resize(model, copy_, plan_gather(model, groups, dead), groups)
            shapes = output_shapes(copy_, example)
        except CompactUnsupported as error:
            protected[group.root] = str(error)
            continue
        if shapes != expected:
            protected[group.root] = "its channels reach the model output"
    resize(model, copy_, {}, groups)
    return protected


def plan_gather(
    model: nn.Module, groups: Sequence[ChannelGroup], dead: Sequence[Tensor | None]
) -> Gather:
    """Kept indices per parameter and dimension, for the dead channels of each group."""
    lost: dict[tuple[str, int], Tensor] = {}
    for group, group_dead in zip(groups, dead):
        if group_dead is None or not bool(group_dead.any()):
            continue
        for s in group.slices:
            key = (s.param, s.dim)
            if key not in lost:
                size = model.get_parameter(s.param).shape[s.dim]
                lost[key] = torch.zeros(size, dtype=torch.bool)
            lost[key][s.index[group_dead[s.root]]] = True
    gather: dict[str, list[tuple[int, Tensor]]] = {}
    for (param, dim), gone in sorted(lost.items()):
        if bool(gone.any()):
            gather.setdefault(param, []).append((dim, torch.nonzero(~gone).flatten()))
    return {name: tuple(dims) for name, dims in gather.items()}


def resize(
    model: nn.Module, copy_: nn.Module, gather: Gather, groups: Sequence[ChannelGroup]
) -> None:
    """Sets the copy's channel counts and placeholders for ``gather`` (all others: full)."""
    touched = {s.param.rpartition(".")[0] for g in groups for s in g.slices}
    for path in sorted(touched):
        dense = model.get_submodule(path)
        twin = copy_.get_submodule(path)
        shapes: dict[str, tuple[int, ...]] = {}
        for attr, value in dense.named_parameters(recurse=False):
            sizes = list(value.shape)
            for dim, index in gather.get(f"{path}.{attr}" if path else attr, ()):
                sizes[dim] = len(index)
            shapes[attr] = tuple(sizes)
        _set_counts(path, dense, twin, shapes)
        for attr, shape in shapes.items():
            value = dense.get_parameter(attr)
            placeholder = torch.empty(shape, dtype=value.dtype, device="meta")
            twin.register_parameter(attr, nn.Parameter(placeholder, value.requires_grad))
        if isinstance(dense, _NormBase) and "weight" in shapes:
            for attr in ("running_mean", "running_var"):
                buffer = getattr(dense, attr, None)
                if isinstance(buffer, Tensor):
                    placeholder = torch.empty(
                        shapes["weight"][:1], dtype=buffer.dtype, device="meta"
                    )
                    twin.register_buffer(attr, placeholder)


def _set_counts(
    path: str, dense: nn.Module, twin: nn.Module, shapes: Mapping[str, tuple[int, ...]]
) -> None:
    """Sets the channel-count attributes of one module of the copy from its new shapes."""
    weight = shapes.get("weight")
    if weight is None:
        if shapes:
            raise CompactUnsupported(f"{path} ({type(dense).__name__}) has no weight to size")
        return
    if isinstance(dense, _ConvNd):
        if dense.transposed:
            if dense.groups != 1:
                raise CompactUnsupported(f"grouped transposed convolution {path}")
            _set(twin, in_channels=weight[0], out_channels=weight[1])
            return
        if dense.groups == 1:
            _set(twin, out_channels=weight[0], in_channels=weight[1])
            return
        if grouped_conv(dense) or weight[1] != 1:
            if weight != tuple(dense.weight.shape):
                raise CompactUnsupported(f"uneven cut of grouped convolution {path}")
            return
        _set(twin, groups=weight[0], in_channels=weight[0], out_channels=weight[0])
    elif isinstance(dense, nn.Linear):
        _set(twin, out_features=weight[0], in_features=weight[1])
    elif isinstance(dense, _NormBase):  # BatchNorm, SyncBatchNorm, InstanceNorm
        _set(twin, num_features=weight[0])
    elif isinstance(dense, nn.LayerNorm):
        if len(dense.normalized_shape) != 1:
            raise CompactUnsupported(f"LayerNorm over more than one dimension at {path}")
        _set(twin, normalized_shape=(weight[0],))
    elif isinstance(dense, nn.GroupNorm):
        if weight[0] % dense.num_groups:
            raise CompactUnsupported(
                f"GroupNorm {path} with {dense.num_groups} groups cannot keep {weight[0]} channels"
            )
        _set(twin, num_channels=weight[0])
    elif isinstance(dense, nn.PReLU):
        _set(twin, num_parameters=weight[0])
    elif weight != tuple(dense.get_parameter("weight").shape):
        raise CompactUnsupported(f"the channel count of {path} ({type(dense).__name__}) is unknown")


def _set(module: nn.Module, **values: Any) -> None:
    for name, value in values.items():
        setattr(module, name, value)
