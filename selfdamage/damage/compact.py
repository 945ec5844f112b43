"""The compact twin: channel damage run on a physically smaller copy of the model.

With :class:`~selfdamage.damage.ChannelDamage` the twin's dead channels output zero, so
the masked twin wastes the work of computing them. :class:`CompactTwin` runs the twin on
a *structural copy* of the model in which every dead channel is gone: at each refresh
(:meth:`CompactTwin.update`, from ``masks_changed``) the copy's channel counts
(``out_channels``, ``groups`` of depthwise convolutions, ``num_features``,
``normalized_shape``, ``in/out_features``) are set from the masks, and the kept indices
of every parameter are computed per dimension. At every twin pass
(:meth:`CompactTwin.forward`) the copy's parameters, buffers and the twin's normalization
state are *gathered* from the shared full-size tensors (``index_select``) and the copy is
run with ``torch.func.functional_call``: gradients flow back into the shared weights
(dead entries get zero gradient from the twin), and nothing is stored twice (the copy
holds ``meta`` placeholders only). For each BatchNorm layer in training mode (its own
mode, not the root module's) the twin's running statistics of the kept channels are
written back after the pass; those of dead channels stay as they were. The copy is made
again when the model's module types or dtypes change (``convert_sync_batchnorm``,
``.double()``).

A group of channels is kept at full size in the copy (and masked, as in the masked twin)
when removing it would change the model's output shape (its channels *are* the output,
as the features before an adapter's head) or would need an uneven cut of a grouped
convolution; :attr:`~selfdamage.damage.ChannelDamage.compact_protected` says which and
why. Where no copy can be made (a module whose channel count the copy cannot set, a
forward pass that cannot run on ``meta`` tensors, a channel count used as a Python int),
or where it would cost more than the masked twin (on the CPU, convolutions at two shapes
each that overflow oneDNN's primitive cache), the strategy falls back to the masked twin:
:attr:`~selfdamage.damage.ChannelDamage.fallback_reason` says why.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch._guards import detect_fake_mode
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from selfdamage._aliasing import call_per_slot, find_aliases
from selfdamage._compat.compact_state import upgrade_compact_twin_state
from selfdamage._modules import device_of
from selfdamage.damage._compact_copy import (
    CompactUnsupported,
    Gather,
    computed_weights,
    find_protected,
    meta_copy,
    output_shapes,
    plan_gather,
    resize,
    same_structure,
)
from selfdamage.damage._example_inputs import to_meta
from selfdamage.damage.masks import apply_mask
from selfdamage.damage.reports import dead_channels
from selfdamage.damage.tracing import ChannelGroup

__all__ = ["CompactTwin"]


class CompactTwin:
    """A physically smaller copy of the model for the channel-damaged twin pass.

    Built once with the example inputs' shapes; :meth:`update` rebuilds the copy's
    channel counts and the gather indices from the masks (per refresh, never per step);
    :meth:`forward` runs the twin on gathered tensors. Holds plain data (index tensors,
    a ``meta`` module tree), so it survives ``copy.deepcopy`` and pickling; the indices
    follow the weights' device by themselves.

    Args:
        example_inputs: An input the model accepts; only its shapes and dtypes are kept
            (as ``meta`` tensors), for the shape checks.

    Examples:
        >>> from selfdamage import ChannelDamage, SelfDamagingWrapper
        >>> from selfdamage.backbones import cifar_resnet18
        >>> damage = ChannelDamage(0.5, example_inputs=torch.randn(2, 3, 32, 32))
        >>> wrapper = SelfDamagingWrapper(cifar_resnet18(width=16), damage=damage)
        >>> damage.compact_active, damage.fallback_reason
        (True, None)
        >>> wrapper.damaged(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 128])
    """

    def __init__(self, example_inputs: Any) -> None:
        self.example = to_meta(example_inputs)
        self.active = False
        self.fallback_reason: str | None = None
        self.protected: dict[str, str] | None = None
        self._warned: set[str] = set()
        self._copy: nn.Module | None = None
        self._gather: Gather = {}
        self._masked: frozenset[str] = frozenset()
        self._on_device: dict[torch.device, dict[str, tuple[Tensor, ...]]] = {}
        self._expected: list[torch.Size] | None = None
        # Every group's dead channels as update() saw them, until the next twin pass checks.
        self._unchecked: list[Tensor] | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(upgrade_compact_twin_state(state))

    # -- per refresh ---------------------------------------------------------------------

    @torch.no_grad()
    def update(
        self, model: nn.Module, groups: Sequence[ChannelGroup], masks: Mapping[str, Tensor]
    ) -> None:
        """Rebuilds the copy's channel counts and the gather indices from ``masks``.

        Called after every refresh and checkpoint load. The copy is made again when the
        model's module types or tensor dtypes changed since it was made
        (``convert_sync_batchnorm``, ``.double()``); the example inputs take the model's
        floating dtype. On failure the twin falls back to masking (``active`` False,
        ``fallback_reason`` set) with a warning, once per reason.
        """
        self._on_device = {}
        self._unchecked = None
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        example = to_meta(self.example, dtype)
        try:
            if self._copy is None or not same_structure(model, self._copy):
                self._copy = meta_copy(model)
                self._expected = output_shapes(self._copy, example)
            if self.protected is None:
                self.protected = find_protected(model, self._copy, groups, example)
                _warn_if_mostly_protected(self.protected, len(groups))
            keep = {i for i, g in enumerate(groups) if g.root not in self.protected}
            every = [dead_channels(g, masks) for g in groups]
            dead = [d if i in keep else None for i, d in enumerate(every)]
            gather = plan_gather(model, groups, dead)
            resize(model, self._copy, gather, groups)
            shapes = output_shapes(self._copy, example)
            if shapes != self._expected:
                raise CompactUnsupported(
                    f"the compact copy's output shapes {shapes} differ from the dense "
                    f"model's {self._expected} (a channel count used as a Python int?)"
                )
            overflow = onednn_cache_overflow(model, self._copy)
            if overflow is not None:
                raise CompactUnsupported(overflow)
        except CompactUnsupported as error:
            self._fall_back(str(error))
            return
        self._gather = _with_buffers(model, gather)
        self._masked = frozenset(
            name
            for name, mask in masks.items()
            if not bool(_gathered(mask, self._gather.get(name, ())).all())
        )
        self.active = True
        self.fallback_reason = None
        self._unchecked = every

    @torch.no_grad()
    def check_masks(
        self, model: nn.Module, groups: Sequence[ChannelGroup], masks: Mapping[str, Tensor]
    ) -> None:
        """Rebuilds the copy if the masks or the model changed since :meth:`update`.

        Runs its check at the first twin pass after each update only (one look at the
        masks per refresh, none per step). It catches DDP: wrapping a model in
        ``DistributedDataParallel`` writes rank 0's parameters and buffers, masks
        included, into every rank's tensors, with no ``refresh_mask()`` or
        ``load_state_dict()`` to tell the strategy; ranks that started from different
        weights would otherwise keep running a copy built from their own masks. Masks
        without values (``meta`` tensors, fake tensors as in ``torch.export``) leave the
        check for a later pass. The model changes this way too when its BatchNorm layers
        are converted to ``SyncBatchNorm`` after wrapping, as :doc:`/distributed` says to.
        """
        if self._unchecked is None or not _readable(list(masks.values())):
            return  # nothing to check, or masks without values (meta, fake): still pending
        changed = self._copy is None or not same_structure(model, self._copy)
        if changed or any(
            not torch.equal(dead_channels(group, masks), dead)
            for group, dead in zip(groups, self._unchecked)
        ):
            self.update(model, groups, masks)
        self._unchecked = None

    def _fall_back(self, reason: str) -> None:
        self.active = False
        self.fallback_reason = reason
        self._gather, self._masked = {}, frozenset()
        if reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(
                f"compact channel twin unavailable, the twin runs masked instead: {reason}. "
                "Pass ChannelDamage(..., compact=False) to silence this.",
                RuntimeWarning,
                stacklevel=2,
            )

    # -- per step ------------------------------------------------------------------------

    def forward(
        self,
        model: nn.Module,
        substitutes: Mapping[str, Tensor],
        masks: Mapping[str, Tensor],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        """Runs the twin on the copy with tensors gathered from the shared full-size ones.

        Args:
            model: The bare model.
            substitutes: The twin's normalization parameters and running statistics,
                full size, by the model's qualified names.
            masks: ``{name: bool mask}`` for every masked parameter.
            args: The call's positional inputs.
            kwargs: The call's keyword inputs.

        Returns:
            Whatever the model returns; its shapes are the dense model's.
        """
        if self._copy is None or not self.active:
            raise RuntimeError("the compact twin is not active; run the masked twin instead.")
        device = device_of(model)
        named = _named_tensors(model)
        gather = self._on_device.get(device)
        if gather is None:
            gather = {
                name: _open_mesh(value.shape, self._gather[name], device)
                for name, value in named
                if name in self._gather
            }
            if detect_fake_mode() is None:  # fake index tensors must not outlive the trace
                self._on_device[device] = gather
        training: dict[str, bool] = {}  # each module's mode, root's or not (test-time BN)
        for (path, dense), twin in zip(model.named_modules(), self._copy.modules()):
            twin.training = training[path] = dense.training
        tensors: dict[str, Tensor] = {}
        written: list[tuple[Tensor, int, Tensor, Tensor]] = []
        for name, value in named:
            source = substitutes.get(name, value)
            if name in self._masked:
                source = apply_mask(source, masks[name])
            mesh = gather.get(name)
            out = source if mesh is None else _Take.apply(source, mesh)
            tensors[name] = out
            dims = self._gather.get(name, ())
            stats = not isinstance(value, nn.Parameter) and out.is_floating_point()
            updated = stats and name in substitutes and training[name.rpartition(".")[0]]
            if dims and updated:  # running statistics of a training norm layer
                dim, index = dims[0]
                written.append((source, dim, index.to(device), out))
        try:
            tied = find_aliases(self._copy).tied  # each slot once: shared submodules
            result = call_per_slot(self._copy, tensors, tied, args, kwargs)
        finally:  # weight_norm's computed weights: back to placeholders, no graph kept
            for module, attr in computed_weights(self._copy):
                setattr(module, attr, to_meta(getattr(module, attr)))
        if written:
            with torch.no_grad():
                for full, dim, index, part in written:
                    full.index_copy_(dim, index, part)
        return result


def _warn_if_mostly_protected(protected: Mapping[str, str], groups: int) -> None:
    """Warns (once: the protected groups are found once) if most groups stay full size."""
    if 2 * len(protected) <= groups:
        return
    root, why = next(iter(protected.items()))
    warnings.warn(
        f"the compact channel twin keeps {len(protected)} of {groups} channel groups at "
        f"full size (masked), e.g. {root} ({why}), so it saves little work over the masked "
        "twin; damage.compact_protected lists them all.",
        UserWarning,
        stacklevel=2,
    )


ONEDNN_PRIMITIVES_PER_CONV = 6
"""oneDNN primitives a training step creates per convolution shape on the CPU: forward,
backward to data, backward to weights and about three reorders. Counted with
``ONEDNN_VERBOSE=all`` in a step with the compact twin (batch 4, 2 threads): 4.9 for a
ResNet-50 (524 for 106 shapes), 5.3 for a DenseNet-121 (1271 for 240), 5.5 for an
EfficientNet-B0 (888 for 162)."""


def onednn_cache_capacity() -> int:
    """Entries of oneDNN's primitive cache: ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, else 1024.

    oneDNN reads the variable once, when it first creates a primitive; set it before that.
    """
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"):
        value = os.environ.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return 1024


def onednn_cache_overflow(model: nn.Module, copy_: nn.Module) -> str | None:
    """Why the compact twin would thrash oneDNN's primitive cache, or None if it would not.

    On the CPU, PyTorch runs convolutions through oneDNN, which keeps the primitives
    (compiled kernels) of the last ``onednn_cache_capacity()`` shapes. A step with the
    compact twin runs every convolution at two shapes, the dense and the compact one;
    when their primitives outnumber the cache, each pass evicts the other's and every
    step compiles most of them again (DenseNet-121, 120 convolutions: 1192 primitives
    re-created per step; 745 ms against 265 ms for a plain step and 330 ms with the
    masked twin, 2 threads). Then the masked twin runs instead.
    """
    device = device_of(model)
    mkldnn = torch.backends.mkldnn
    if device.type != "cpu" or not (mkldnn.is_available() and mkldnn.enabled):
        return None
    convs = changed = 0
    for dense, twin in zip(model.modules(), copy_.modules()):
        if isinstance(dense, _ConvNd):
            convs += 1
            weight = dict(dense.named_parameters(recurse=False)).get("weight")
            resized = dict(twin.named_parameters(recurse=False)).get("weight")
            changed += weight is not None and resized is not None and weight.shape != resized.shape
    capacity = onednn_cache_capacity()
    if ONEDNN_PRIMITIVES_PER_CONV * (convs + changed) <= capacity:
        return None
    enough = 1 << (2 * ONEDNN_PRIMITIVES_PER_CONV * convs - 1).bit_length()
    return (
        f"on the CPU its {convs} convolutions at two shapes each (dense and compact) need "
        f"more oneDNN primitives than oneDNN's primitive cache holds ({capacity}), so every "
        "step would compile most of them again and cost more than the masked twin; set "
        f"ONEDNN_PRIMITIVE_CACHE_CAPACITY={enough} in the environment before Python starts, "
        "or train on a GPU"
    )


class _Take(torch.autograd.Function):
    """``tensor[index]`` for an open mesh of unique indices; backward copies, never adds.

    The gradient of ``index_select`` on CPU adds into a zero tensor with ``scatter_add``
    (slow along inner dimensions); the kept indices are unique, so a plain copy is enough.
    """

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, index: tuple[Tensor, ...]) -> Tensor:
        ctx.shape, ctx.index = tensor.shape, index
        return tensor[index]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        full = grad.new_zeros(ctx.shape)
        full[ctx.index] = grad
        return full, None


def _readable(tensors: list[Tensor]) -> bool:
    """Whether ``tensors`` hold values to look at: none on ``meta``, no fake tensor mode."""
    on_meta = any(t.device.type == "meta" for t in tensors)
    return not on_meta and detect_fake_mode(tensors) is None


def _open_mesh(
    shape: torch.Size, dims: Sequence[tuple[int, Tensor]], device: torch.device
) -> tuple[Tensor, ...]:
    """Broadcastable indices over the leading dimensions (``numpy.ix_``), kept ones per dim."""
    by_dim = dict(dims)
    count = max(by_dim) + 1
    mesh = []
    for dim in range(count):
        index = by_dim.get(dim)
        if index is None:
            index = torch.arange(shape[dim])
        mesh.append(index.to(device).view(-1, *([1] * (count - 1 - dim))))
    return tuple(mesh)


def _named_tensors(model: nn.Module) -> list[tuple[str, Tensor]]:
    return [*model.named_parameters(), *model.named_buffers()]


def _with_buffers(model: nn.Module, gather: Gather) -> Gather:
    """Adds the running statistics of normalization layers whose parameters are gathered."""
    out = dict(gather)
    for name, module in model.named_modules():
        if not isinstance(module, _NormBase):
            continue
        dims = gather.get(f"{name}.weight" if name else "weight")
        if dims is None:
            continue
        for attr in ("running_mean", "running_var"):
            if isinstance(getattr(module, attr, None), Tensor):
                out[f"{name}.{attr}" if name else attr] = dims
    return out


def _gathered(tensor: Tensor, dims: Sequence[tuple[int, Tensor]]) -> Tensor:
    for dim, index in dims:
        tensor = tensor.index_select(dim, index.to(tensor.device))
    return tensor
