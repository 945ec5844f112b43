"""SelfDamagingWrapper: any model plus a pruned, weight-sharing twin of it."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Union, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from selfdamage._mirror import build_mirror, get_at
from selfdamage.channel_damage import (
    DEFAULT_MAX_CHANNEL_RATIO,
    ChannelDamage,
    ImportanceLike,
    check_damage,
    weight_channel_sparsity,
)
from selfdamage.masks import global_magnitude_masks
from selfdamage.twin_norm import TwinNorm, has_running_stats, throwaway_statistics

__all__ = ["Prunable", "SelfDamagingWrapper"]

Prunable = Union[type, tuple[type, ...], Callable[[str, nn.Module], bool]]
"""Module types whose ``.weight`` is pruned, or a predicate ``(name, module) -> bool``."""


class _Masks(nn.Module):
    """Holds the ``bool`` masks of one layer's parameters, as buffers of the same names."""

    def __init__(self, params: Mapping[str, Tensor]) -> None:
        super().__init__()
        for name, param in params.items():
            self.register_buffer(name, torch.ones_like(param, dtype=torch.bool))


class SelfDamagingWrapper(nn.Module):
    """Wraps a model and gives it a pruned twin that shares its weights (SDCLR [0]).

    ``wrapper(x)`` is the dense model, unchanged. ``wrapper.damaged(x)`` runs the same
    model with every prunable weight multiplied by a ``bool`` mask and, with
    ``twin_norm=True``, with the twin's own BatchNorm parameters and running statistics
    in place of the dense ones. Both branches back-propagate into the shared weights, so
    a contrastive loss between ``wrapper(x0)`` and ``wrapper.damaged(x1)`` needs one
    backward pass. :meth:`refresh_mask` re-prunes by global weight magnitude; call it at
    the start of every epoch.

    The wrapped model is not modified: it keeps its class, parameter names and
    ``state_dict`` keys, and carries no hooks or parametrizations. The twin's state
    (masks under ``masks.*``, normalization under ``twin_norms.*``) lives in registered
    buffers and parameters of the wrapper, so ``.to()``, ``state_dict()``,
    ``copy.deepcopy`` and DDP handle it like any other state.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990

    Args:
        model: The model to wrap, any ``nn.Module``.
        prune_ratio: Fraction of the prunable weights the twin loses, in ``[0, 1)``.
            0.9 on CIFAR and 0.3 on ImageNet-100 in the paper.
        random_ratio: Part of ``prune_ratio`` chosen uniformly at random among the
            weights kept by magnitude, in ``[0, prune_ratio]`` (the reference code's
            ``random_prune_percent``, 0 there by default).
        prunable: Module types whose ``.weight`` is pruned, or a predicate
            ``(qualified_name, module) -> bool``. By default every ``nn.Conv2d``,
            as in the paper; normalization layers are never pruned.
        twin_norm: If True, every normalization layer with running statistics (all
            ``_BatchNorm`` subclasses, ``SyncBatchNorm`` included) gets, for the twin
            only, its own affine parameters and running statistics, initialised from
            the dense ones. If False, the twin uses the dense layers' parameters but
            never updates their running statistics.
        damage: ``"weight"`` (the paper: global unstructured magnitude pruning) or
            ``"channel"``: the twin loses whole channels, coupled across layers by
            torch-pruning's dependency graph (:mod:`selfdamage.channel_damage`).
            ``prune_ratio`` is then the fraction of prunable channels, ``prunable``
            selects the convolutions/linears whose output channels may be pruned,
            ``random_ratio`` the part of it chosen at random, and the channel-only
            arguments below apply. Passing them with ``"weight"`` is a ``ValueError``.
        importance: Channel criterion: ``"magnitude"`` (default), ``"taylor"``,
            ``"lamp"``, ``"bn_scale"``, ``"random"`` or a ``torch_pruning.importance.Importance``.
        example_inputs: Required with ``damage="channel"``: an input the model accepts
            (a tensor, a tuple of positional inputs or a dict of keyword inputs), traced
            once at construction.
        ignored_layers: Modules (or qualified names) whose output channels are never
            pruned, with their submodules, e.g. ``[model.layer4]``. The model's output
            channels (the final classifier) are always protected.
        max_channel_ratio: Most of any one channel group the twin may lose (default
            0.9); every group keeps at least one channel.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``, is already a wrapper, or an
            argument has the wrong type.
        ValueError: If a ratio is out of range, no prunable weight is found, or the
            weights are not finite.

    Examples:
        >>> import torchvision
        >>> backbone = torchvision.models.resnet18(num_classes=16)
        >>> wrapper = SelfDamagingWrapper(backbone, prune_ratio=0.9)
        >>> x0, x1 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
        >>> z_dense = wrapper(x0)           # exactly backbone(x0)
        >>> z_twin = wrapper.damaged(x1)    # pruned twin, shared weights
        >>> round(wrapper.sparsity, 3)
        0.9
        >>> wrapper.refresh_mask()          # at the start of every epoch
    """

    model: nn.Module
    masks: nn.Module
    twin_norms: nn.Module
    mask_seed: Tensor
    refresh_count: Tensor

    def __init__(
        self,
        model: nn.Module,
        prune_ratio: float = 0.9,
        *,
        random_ratio: float = 0.0,
        prunable: Prunable = (nn.Conv2d,),
        twin_norm: bool = True,
        damage: str = "weight",
        importance: ImportanceLike | None = None,
        example_inputs: Any = None,
        ignored_layers: Sequence[nn.Module | str] | None = None,
        max_channel_ratio: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(model, SelfDamagingWrapper):
            raise TypeError(
                "model is already a SelfDamagingWrapper; wrap the bare model "
                "(wrapper.model) or use the existing wrapper."
            )
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        for name, module in model.named_modules():
            if isinstance(module, SelfDamagingWrapper):
                raise TypeError(
                    f"model contains a SelfDamagingWrapper at {name!r}; a model can only "
                    "be wrapped once. Wrap the bare model instead."
                )
        self.prune_ratio = _check_ratio("prune_ratio", prune_ratio, 0.0, 1.0, high_open=True)
        self.random_ratio = _check_ratio(
            "random_ratio", random_ratio, 0.0, self.prune_ratio, high_name="prune_ratio"
        )
        if not isinstance(twin_norm, bool):
            raise TypeError(f"twin_norm must be a bool, got twin_norm={twin_norm!r}.")
        self.twin_norm = twin_norm
        select = _prunable_predicate(prunable)

        self.damage = check_damage(
            damage,
            importance=importance,
            example_inputs=example_inputs,
            ignored_layers=ignored_layers,
            max_channel_ratio=max_channel_ratio,
        )

        self.model = model
        self._channel: ChannelDamage | None = None
        if self.damage == "channel":
            # Traced once on the bare model; the plan is plain data, the graph is dropped.
            self._channel = ChannelDamage(
                model,
                example_inputs,
                importance="magnitude" if importance is None else importance,
                select=select,
                ignored_layers=ignored_layers,
                max_channel_ratio=(
                    DEFAULT_MAX_CHANNEL_RATIO if max_channel_ratio is None else max_channel_ratio
                ),
            )
            self._masked_names = list(self._channel.param_names)
        else:
            pruned = _find_prunable(model, select)
            if not pruned:
                raise ValueError(
                    f"model has no prunable weights: no module matched prunable={prunable!r} "
                    f"in {type(model).__name__}. Pass the module types to prune, e.g. "
                    "prunable=(nn.Conv2d, nn.Linear), or a predicate (name, module) -> bool."
                )
            self._masked_names = [_join(name, "weight") for name in pruned]
        self.masks = build_mirror(_mask_leaves(model, self._masked_names))
        norms = {
            name: module for name, module in model.named_modules() if isinstance(module, _BatchNorm)
        }
        self._norm_names = list(norms)
        self.twin_norms = build_mirror(
            {name: TwinNorm(m) for name, m in norms.items() if twin_norm}
        )
        # Seed of the random part of the mask. A buffer, so DDP broadcasts rank 0's value
        # and a checkpoint resumes the same sequence of masks.
        seed = torch.randint(0, 2**62, (), dtype=torch.int64)
        self.register_buffer("mask_seed", seed)
        self.register_buffer("refresh_count", torch.zeros((), dtype=torch.int64))
        self.refresh_mask()

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """The dense model: returns exactly ``model(x, *args, **kwargs)``."""
        return self.model(x, *args, **kwargs)

    def damaged(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """The pruned twin: the model with masked weights and the twin's normalization.

        Gradients flow into the shared weights; masked-out entries receive zero gradient
        from this pass. In training mode the twin's own running statistics are updated,
        never the dense ones.

        Args:
            x: The model's first input, e.g. an image batch of shape ``(N, C, H, W)``.
            *args: Further positional inputs of the model.
            **kwargs: Keyword inputs of the model.

        Returns:
            Whatever the model returns.
        """
        substitutes: dict[str, Tensor] = {}
        for name in self._norm_names:
            if self.twin_norm:
                twin = cast(TwinNorm, get_at(self.twin_norms, name))
                substitutes.update(twin.substitutes(name))
            else:
                norm = cast(_BatchNorm, self.model.get_submodule(name))
                if norm.training and has_running_stats(norm):
                    substitutes.update(throwaway_statistics(norm, name))
        for name in self._masked_names:
            value = substitutes.get(name)
            if value is None:
                value = self.model.get_parameter(name)
            substitutes[name] = value * self.masks.get_buffer(name)
        return functional_call(self.model, substitutes, (x, *args), kwargs, strict=False)

    @torch.no_grad()
    def refresh_mask(self) -> None:
        """Re-prunes the twin from the current dense weights.

        One global magnitude threshold over all prunable weights (plus the random part,
        see ``random_ratio``); the previous mask is discarded, not refined. The random
        part is seeded from the wrapper's ``mask_seed`` buffer and the number of earlier
        refreshes, so all DDP ranks and a resumed run draw the same masks.

        With ``damage="channel"``, the channels are chosen again instead: every group
        scored by the importance from the current dense weights, the ``prune_ratio``
        least important channels taken globally (ties broken deterministically), and
        every coupled slice masked; a random importance is seeded the same way.

        Raises:
            ValueError: If a prunable weight holds NaN or infinite values, or (with
                ``importance="taylor"``) the gradients have already been cleared.
        """
        if self._channel is not None:
            # Channel damage: score the groups, choose channels globally, mask every slice.
            new_masks = self._channel.compute_masks(
                self.model,
                self.prune_ratio,
                random_ratio=self.random_ratio,
                seed=int(self.mask_seed) + int(self.refresh_count),
                initial=int(self.refresh_count) == 0,
            )
            for name, mask in new_masks.items():
                self.masks.get_buffer(name).copy_(mask)
            self.refresh_count += 1
            return
        weights = [self.model.get_parameter(n) for n in self._masked_names]
        generator = None
        if self.random_ratio > 0:
            generator = torch.Generator(device=weights[0].device)
            generator.manual_seed(int(self.mask_seed) + int(self.refresh_count))
        try:
            masks = global_magnitude_masks(
                weights, self.prune_ratio, random_ratio=self.random_ratio, generator=generator
            )
        except ValueError as error:
            bad = [n for n, w in zip(self._masked_names, weights) if not torch.isfinite(w).all()]
            raise ValueError(f"refresh_mask(): {error} Non-finite weights: {bad}.") from error
        for name, mask in zip(self._masked_names, masks):
            self.masks.get_buffer(name).copy_(mask)
        self.refresh_count += 1

    @property
    def channel_sparsity(self) -> float:
        """Fraction of channels the twin currently loses entirely.

        With ``damage="channel"``: the realised fraction of the prunable channels (each
        coupled group's channels counted once, as ``prune_ratio`` counts them) that
        output exactly zero, read from the masks. With ``damage="weight"``: the fraction
        of the masked layers' output channels whose weights happen to be all masked out.
        Per layer: :func:`selfdamage.channel_damage.layer_channel_sparsity`.
        """
        if self._channel is not None:
            return self._channel.channel_sparsity(dict(self.named_masks()))
        return weight_channel_sparsity(self)

    @property
    def sparsity(self) -> float:
        """Fraction of the prunable weights that the twin currently masks out."""
        masks = [mask for _, mask in self.named_masks()]
        total = sum(m.numel() for m in masks)
        kept = torch.stack([torch.count_nonzero(m) for m in masks]).sum()
        return 1.0 - float(kept) / total

    def named_masks(self) -> Iterator[tuple[str, Tensor]]:
        """Yields ``(qualified parameter name, bool mask)`` for every masked parameter.

        Examples:
            >>> wrapper = SelfDamagingWrapper(nn.Sequential(nn.Conv2d(3, 4, 3)), 0.5)
            >>> [(name, mask.dtype) for name, mask in wrapper.named_masks()]
            [('0.weight', torch.bool)]
        """
        for name in self._masked_names:
            yield name, self.masks.get_buffer(name)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Checks a strict load against the whole wrapper before anything is copied.

        Runs wherever the wrapper sits (at the root, inside an adapter or a
        LightningModule), so a checkpoint of another architecture fails with one clear
        ``ValueError`` instead of a list of missing keys.
        """
        if strict:
            own = {prefix + k: v for k, v in self.state_dict().items()}
            given = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
            missing = [k for k in own if k not in given]
            unexpected = [k for k in given if k not in own]
            mismatched = [
                f"{k}: checkpoint {tuple(v.shape)} vs wrapper {tuple(own[k].shape)}"
                for k, v in given.items()
                if k in own and isinstance(v, Tensor) and v.shape != own[k].shape
            ]
            if missing or unexpected or mismatched:
                raise ValueError(
                    "state_dict does not match this SelfDamagingWrapper's architecture "
                    f"(missing: {_head(missing)}; unexpected: {_head(unexpected)}; "
                    f"shape mismatch: {_head(mismatched)}). Load a checkpoint saved from a "
                    "wrapper around the same model with the same prunable, twin_norm and "
                    "damage settings, or load the bare weights into wrapper.model."
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return (
            f"prune_ratio={self.prune_ratio}, random_ratio={self.random_ratio}, "
            f"twin_norm={self.twin_norm}, masked_tensors={len(self._masked_names)}"
        ) + (f", damage='channel', {self._channel!r}" if self._channel is not None else "")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _mask_leaves(model: nn.Module, param_names: list[str]) -> dict[str, nn.Module]:
    """One ``_Masks`` holder per module, for the given qualified parameter names."""
    by_module: dict[str, dict[str, Tensor]] = {}
    for name in param_names:
        path, _, attr = name.rpartition(".")
        by_module.setdefault(path, {})[attr] = model.get_parameter(name)
    return {path: _Masks(params) for path, params in by_module.items()}


def _head(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _check_ratio(
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    high_open: bool = False,
    high_name: str = "",
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {name}={value!r}.")
    value = float(value)
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        upper = f"{high_name}={high}" if high_name else f"{high}"
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must be in [{low}, {upper}{bracket}, got {name}={value!r}.")
    return value


def _prunable_predicate(prunable: Prunable) -> Callable[[str, nn.Module], bool]:
    if isinstance(prunable, type) or (
        isinstance(prunable, tuple) and all(isinstance(t, type) for t in prunable)
    ):
        types = prunable
        return lambda _name, module: isinstance(module, types)
    if callable(prunable):
        return prunable
    raise TypeError(
        "prunable must be a module type, a tuple of module types, or a callable "
        f"(name, module) -> bool, got prunable={prunable!r}."
    )


def _find_prunable(
    model: nn.Module, select: Callable[[str, nn.Module], bool]
) -> dict[str, nn.Module]:
    """Modules whose ``.weight`` the twin prunes, by qualified name, each weight once."""
    found: dict[str, nn.Module] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) or not select(name, module):
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter):
            raise ValueError(
                f"prunable selected {name or 'the model'!r} ({type(module).__name__}), "
                "which has no weight parameter to prune. Select only modules with a "
                "`.weight` nn.Parameter."
            )
        if id(weight) not in seen:  # tied weights are masked once
            seen.add(id(weight))
            found[name] = module
    return found
