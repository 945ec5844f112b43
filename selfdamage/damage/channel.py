"""ChannelDamage: the twin loses whole channels, coupled across layers by torch-pruning [1].

The design (why masks instead of ``group.prune()``, how the selection differs from
torch-pruning's ``MetaPruner``) is in :doc:`/architecture`.

- [1] DepGraph, 2023, https://arxiv.org/abs/2301.12900
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from selfdamage._checks import check_bool, check_module
from selfdamage.damage._channel_choice import resolve_ignored
from selfdamage.damage.base import Damage, Prunable, Settings, describe_prunable, prunable_predicate
from selfdamage.damage.compact import CompactTwin
from selfdamage.damage.importance import ImportanceLike, as_seed, make_importance, score_groups
from selfdamage.damage.reports import dead_channels, group_channel_sparsity
from selfdamage.damage.selection import (
    DEFAULT_MAX_CHANNEL_RATIO,
    check_ratio_cap,
    global_channel_masks,
)
from selfdamage.damage.tracing import ChannelGroup, trace_groups

__all__ = ["ChannelDamage"]


class ChannelDamage(Damage):
    """The twin loses whole channels, chosen globally by a torch-pruning importance.

    When bound, torch-pruning's ``DependencyGraph`` [1] is built once on the bare model
    (from ``example_inputs``) to find the groups of coupled channels: a convolution's
    output channel, the BatchNorm after it, the input channel of the next layer, every
    layer tied to it by a residual addition. At every refresh each group is scored by
    ``importance`` from the current dense weights, the ``prune_ratio`` least important
    channels are chosen globally, and every parameter slice of a chosen channel is
    masked: the channel outputs exactly zero in the twin, as in the physically pruned
    network. The dense model keeps all its channels.

    Groups whose channels are a model output (the final classifier) are left dense, as
    are groups that touch layers without known channel slices (attention, embeddings),
    that ``importance`` cannot score, or whose output layer's weight is frozen
    (``requires_grad=False``, e.g. a momentum copy); ``skipped`` says why. So are,
    with a ``UserWarning``, groups that touch a tied weight or a layer whose forward does
    not use its weight as is (weight or spectral normalization, a parametrization, timm's
    weight-standardizing ``StdConv2d``, which :class:`~selfdamage.damage.WeightDamage`
    leaves out too): masking one of their channels would change its other channels. Models
    with reshapes of tensors above 4-d (a channel shuffle, a window partition) are
    rejected: torch-pruning's dependency graph cannot follow them.

    - [1] DepGraph, 2023, https://arxiv.org/abs/2301.12900

    Args:
        prune_ratio: Fraction of the prunable channels the twin loses (each coupled
            group's channels counted once), in ``[0, 1)``.
        example_inputs: An input the model accepts, traced once when bound: a tensor,
            a tuple of positional inputs or a dict of keyword inputs (batch size 1 is
            fine). For an adapter: an input of the backbone.
        importance: ``"magnitude"`` (default), ``"taylor"``, ``"lamp"``, ``"bn_scale"``,
            ``"random"`` or a ``torch_pruning.importance.Importance``; see
            :func:`~selfdamage.damage.importance.make_importance`.
        random_ratio: Part of ``prune_ratio`` chosen uniformly at random among the
            channels kept by importance, in ``[0, prune_ratio]``.
        ignored_layers: Modules (or qualified names) whose output channels are never
            pruned, with their submodules, e.g. ``[model.layer4]``.
        max_channel_ratio: Most of any one group the twin may lose, in ``(0, 1]``;
            every group keeps at least one channel.
        prunable: The convolutions/linears whose output channels may be pruned: module
            types or a predicate ``(qualified_name, module) -> bool``.
        compact: If True, the twin runs on a physically smaller copy of the model with
            the kept channels' weights gathered from the shared ones (see
            :mod:`~selfdamage.damage.compact`), falling back to masking with a warning
            where the copy cannot be made, and warning when most groups must stay full size
            in it; if False, the masked twin.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If a ratio is out of range or ``example_inputs`` is missing; when
            bound, if the model does not run on ``example_inputs``, torch-pruning's
            dependency graph cannot follow it, it is bound under
            ``torch.inference_mode()``, or it has no prunable group (the message names
            the cause, e.g. the ``prunable`` that would work).

    Examples:
        >>> import torchvision
        >>> from selfdamage import SelfDamagingWrapper
        >>> backbone = torchvision.models.resnet18(num_classes=10)
        >>> damage = ChannelDamage(0.5, example_inputs=torch.randn(1, 3, 32, 32))
        >>> wrapper = SelfDamagingWrapper(backbone, damage=damage)
        >>> len(damage.groups), damage.num_channels, damage.skipped
        (12, 2880, {'fc': 'model output'})
        >>> round(wrapper.channel_sparsity, 3)
        0.5
    """

    def __init__(
        self,
        prune_ratio: float,
        *,
        example_inputs: Any,
        importance: ImportanceLike = "magnitude",
        random_ratio: float = 0.0,
        ignored_layers: Sequence[nn.Module | str] | None = None,
        max_channel_ratio: float = DEFAULT_MAX_CHANNEL_RATIO,
        prunable: Prunable = (nn.Conv2d,),
        compact: bool = True,
    ) -> None:
        super().__init__(prune_ratio, random_ratio=random_ratio)
        if example_inputs is None:
            raise ValueError(
                "example_inputs is required for channel-level damage: torch-pruning traces "
                "one forward pass to find the coupled channels. Pass a small input the "
                "model accepts, e.g. example_inputs=torch.randn(2, 3, 32, 32)."
            )
        self.example_inputs = example_inputs
        self.importance = make_importance(importance)
        self.max_channel_ratio = check_ratio_cap(max_channel_ratio)
        prunable_predicate(prunable)  # type check now, not at bind
        self.prunable = prunable
        if isinstance(ignored_layers, (nn.Module, str)):
            resolve_ignored(nn.Module(), ignored_layers)  # raises the "wrap it in a list" error
        self.ignored_layers = ignored_layers
        self.compact = check_bool("compact", compact)
        self._compact: CompactTwin | None = None
        self.groups: list[ChannelGroup] = []
        self.skipped: dict[str, str] = {}
        self.num_channels = 0

    def setup(self, model: nn.Module) -> list[str]:
        """Traces ``model`` and keeps its channel groups; returns every parameter they touch.

        The example inputs and ignored layers are dropped afterwards: the strategy keeps
        plain data only (names and index tensors).
        """
        check_module("model", model)
        if torch.is_inference_mode_enabled() or any(p.is_inference() for p in model.parameters()):
            raise ValueError(
                "ChannelDamage cannot trace a model under torch.inference_mode() (or one "
                "whose parameters were created in it): torch-pruning follows the autograd "
                "graph of one forward pass, which inference mode does not record. Build the "
                "model and the wrapper outside torch.inference_mode() (torch.no_grad() is fine)."
            )
        self.groups, self.skipped = trace_groups(
            model,
            self.example_inputs,
            select=prunable_predicate(self.prunable),
            ignored_layers=self.ignored_layers,
            importance=self.importance,
        )
        if self.compact:
            self._compact = CompactTwin(self.example_inputs)
        self.example_inputs = self.ignored_layers = None
        self.num_channels = sum(g.channels for g in self.groups)
        order = {name: i for i, (name, _) in enumerate(model.named_parameters())}
        touched = {s.param for g in self.groups for s in g.slices}
        return sorted(touched, key=lambda n: order.get(n, len(order)))

    @torch.no_grad()
    def compute_masks(self, model: nn.Module, *, seed: int, first: bool) -> dict[str, Tensor]:
        """Scores the groups, chooses channels globally and masks every slice of them.

        Ties are broken deterministically; a random importance and the random part are
        drawn from ``seed``. With ``importance="taylor"``, call ``refresh_mask()`` after
        ``loss.backward()`` and before the gradients are cleared (at ``first``,
        magnitude stands in).

        Raises:
            ValueError: If a masked parameter holds NaN or infinite values, gradients are
                missing for ``"taylor"``, or ``max_channel_ratio`` makes ``prune_ratio``
                unreachable.
        """
        names = self.param_names
        scores = score_groups(self.importance, model, self.groups, names, seed=seed, initial=first)
        keep = global_channel_masks(
            scores,
            self.prune_ratio,
            max_channel_ratio=self.max_channel_ratio,
            random_ratio=self.random_ratio,
            generator=torch.Generator().manual_seed(as_seed(seed)),
        )
        return channel_masks(model, self.groups, keep, names)

    def channel_sparsity(self, model: nn.Module, masks: Mapping[str, Tensor]) -> float:
        """Realised fraction of all prunable channels that output zero under ``masks``.

        Each group's channels count once, however many coupled layers share them:
        torch-pruning's definition of the global pruning ratio, which ``prune_ratio``
        asks for.
        """
        dead = sum(int(dead_channels(g, masks).sum()) for g in self.groups)
        return dead / self.num_channels

    def group_channel_sparsity(self, masks: Mapping[str, Tensor]) -> dict[str, float]:
        """Realised fraction of each group's channels that output zero under ``masks``.

        Returns:
            ``{root layer name: fraction}`` in ``groups`` order.
        """
        return group_channel_sparsity(self.groups, masks)

    @property
    def settings(self) -> Settings:
        """The ratios, importance (class name), ``max_channel_ratio`` and ``prunable``."""
        return {
            **super().settings,
            "importance": type(self.importance).__name__,
            "max_channel_ratio": self.max_channel_ratio,
            "prunable": describe_prunable(self.prunable),
        }

    def masks_changed(self, model: nn.Module, masks: Mapping[str, Tensor]) -> None:
        """Rebuilds the compact copy and its gather indices (with ``compact=True``)."""
        if self._compact is not None:
            self._compact.update(model, self.groups, masks)

    def twin_forward(
        self,
        model: nn.Module,
        substitutes: Mapping[str, Tensor],
        masks: Mapping[str, Tensor],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        """Runs the compact twin if it is active, else the masked twin."""
        if self._compact is not None:
            self._compact.check_masks(model, self.groups, masks)
            if self._compact.active:
                return self._compact.forward(model, substitutes, masks, args, kwargs)
        return super().twin_forward(model, substitutes, masks, args, kwargs)

    @property
    def compact_active(self) -> bool:
        """Whether the last refresh set up the compact twin; False when the masked twin runs."""
        return self._compact is not None and self._compact.active

    @property
    def fallback_reason(self) -> str | None:
        """Why the compact twin fell back to masking at the last refresh, or None."""
        return None if self._compact is None else self._compact.fallback_reason

    @property
    def compact_protected(self) -> dict[str, str]:
        """The groups kept at full size (masked) in the compact copy, as ``{root: why}``."""
        return dict(self._compact.protected or {}) if self._compact is not None else {}


def channel_masks(
    model: nn.Module,
    groups: Sequence[ChannelGroup],
    keep: Sequence[Tensor],
    param_names: Sequence[str],
) -> dict[str, Tensor]:
    """Full-shape ``bool`` masks that switch off every slice of the channels not kept.

    Args:
        model: The model the groups were traced on.
        groups: The channel groups.
        keep: Per group, a ``bool`` tensor of shape ``(channels,)``, True where kept.
        param_names: Every parameter the groups touch.

    Returns:
        ``{name: bool mask}``, same shape and device as each parameter.
    """
    masks = {
        name: torch.ones_like(model.get_parameter(name), dtype=torch.bool) for name in param_names
    }
    for group, kept in zip(groups, keep):
        for s in group.slices:
            mask = masks[s.param]
            dead = s.index[~kept[s.root]].to(mask.device)
            if dead.numel() == 0:
                continue
            if s.conv_groups > 1:  # input slice of a grouped convolution
                per_group = mask.shape[1]
                grouped = mask.view(s.conv_groups, -1, *mask.shape[1:])
                grouped[dead // per_group, :, dead % per_group] = False
            else:
                mask.index_fill_(s.dim, dead, False)
    return masks
