"""SelfDamagingWrapper: any model plus a pruned, weight-sharing twin of it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from selfdamage._checks import check_bool, check_module
from selfdamage._deprecated import legacy_damage
from selfdamage._mirror import build_mirror, get_at
from selfdamage.damage.base import Damage, Prunable
from selfdamage.damage.weight import WeightDamage
from selfdamage.twin_norm import TwinNorm, has_running_stats, throwaway_statistics

__all__ = ["Prunable", "SelfDamagingWrapper"]


class _Default(float):
    """A default that prints as its value but is told apart from the same value passed in.

    Lets the signature read ``prune_ratio=0.9`` while the wrapper still sees whether the
    shorthand was given next to a ``damage=`` strategy (``value is DEFAULT_PRUNE_RATIO``).
    """

    def __repr__(self) -> str:
        return repr(float(self))


DEFAULT_PRUNE_RATIO: float = _Default(0.9)
DEFAULT_RANDOM_RATIO: float = _Default(0.0)
DEFAULT_PRUNABLE: Prunable = (nn.Conv2d,)


class _Masks(nn.Module):
    """Holds the ``bool`` masks of one layer's parameters, as buffers of the same names."""

    def __init__(self, params: Mapping[str, Tensor]) -> None:
        super().__init__()
        for name, param in params.items():
            self.register_buffer(name, torch.ones_like(param, dtype=torch.bool))


class SelfDamagingWrapper(nn.Module):
    """Wraps a model and gives it a damaged twin that shares its weights (SDCLR [0]).

    ``wrapper(x)`` is the dense model, unchanged. ``wrapper.damaged(x)`` runs the same
    model with every masked parameter multiplied by a ``bool`` mask and, with
    ``twin_norm=True``, with the twin's own BatchNorm parameters and running statistics
    in place of the dense ones. Both branches back-propagate into the shared weights, so
    a contrastive loss between ``wrapper(x0)`` and ``wrapper.damaged(x1)`` needs one
    backward pass. :meth:`refresh_mask` damages the twin again from the current dense
    weights; call it at the start of every epoch.

    *How* the twin is damaged is a strategy object, ``damage`` (:mod:`selfdamage.damage`):
    :class:`~selfdamage.damage.WeightDamage` (the paper, the default: global magnitude
    pruning of single weights), :class:`~selfdamage.damage.ChannelDamage` (whole channels)
    or your own :class:`~selfdamage.damage.Damage`. ``prune_ratio``, ``random_ratio`` and
    ``prunable`` are the short way to say ``damage=WeightDamage(prune_ratio,
    random_ratio=..., prunable=...)``; give either them or ``damage``, not both.

    The wrapped model is not modified: it keeps its class, parameter names and
    ``state_dict`` keys, and carries no hooks or parametrizations. The twin's state
    (masks under ``masks.*``, normalization under ``twin_norms.*``, the seed of the
    random draws) lives in registered buffers and parameters of the wrapper, so
    ``.to()``, ``state_dict()``, ``copy.deepcopy`` and DDP handle it like any other state.

    - [0] SDCLR, 2021, https://arxiv.org/abs/2106.02990

    Args:
        model: The model to wrap, any ``nn.Module``.
        prune_ratio: Shorthand: fraction of the prunable weights the twin loses, in
            ``[0, 1)``. 0.9 on CIFAR and 0.3 on ImageNet-100 in the paper.
        random_ratio: Shorthand: part of ``prune_ratio`` chosen uniformly at random among
            the weights kept by magnitude, in ``[0, prune_ratio]``.
        prunable: Shorthand: module types whose ``.weight`` is pruned, or a predicate
            ``(qualified_name, module) -> bool``. By default every ``nn.Conv2d``.
        twin_norm: If True, every normalization layer with running statistics (all
            ``_BatchNorm`` subclasses, ``SyncBatchNorm`` included) gets, for the twin
            only, its own affine parameters and running statistics, initialised from
            the dense ones. If False, the twin uses the dense layers' parameters but
            never updates their running statistics.
        damage: The damage strategy, bound to ``model`` here (one strategy per wrapper);
            None for ``WeightDamage(prune_ratio, random_ratio=..., prunable=...)``.
        **deprecated_options: 0.1's ``damage="weight"|"channel"`` with ``importance``,
            ``example_inputs``, ``ignored_layers``, ``max_channel_ratio``: still accepted
            in 0.2 with a ``DeprecationWarning``; pass ``damage=ChannelDamage(...)``.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``, is already a wrapper, or an
            argument has the wrong type.
        ValueError: If a ratio is out of range, a shorthand is given together with
            ``damage``, the strategy is already bound, nothing is selected for
            masking, or the weights are not finite.

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
        >>> wrapper.damage
        WeightDamage(prune_ratio=0.9, random_ratio=0.0, prunable='Conv2d')
    """

    model: nn.Module
    masks: nn.Module
    twin_norms: nn.Module
    mask_seed: Tensor
    refresh_count: Tensor
    damage: Damage

    def __init__(
        self,
        model: nn.Module,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        random_ratio: float = DEFAULT_RANDOM_RATIO,
        prunable: Prunable = DEFAULT_PRUNABLE,
        twin_norm: bool = True,
        damage: Damage | None = None,
        **deprecated_options: Any,
    ) -> None:
        super().__init__()
        if isinstance(model, SelfDamagingWrapper):
            raise TypeError(
                "model is already a SelfDamagingWrapper; wrap the bare model "
                "(wrapper.model) or use the existing wrapper."
            )
        nested = nested_wrapper(check_module("model", model))
        if nested is not None:
            raise TypeError(
                f"model contains a SelfDamagingWrapper at {nested!r}; a model can only "
                "be wrapped once. Wrap the bare model instead."
            )
        self.twin_norm = check_bool("twin_norm", twin_norm)
        self.damage = resolve_damage(
            damage,
            prune_ratio=prune_ratio,
            random_ratio=random_ratio,
            prunable=prunable,
            deprecated_options=deprecated_options,
            stacklevel=4,
        )
        self.model = model
        self._masked_names = self.damage.bind(model)
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
        self.register_load_state_dict_post_hook(_masks_loaded)
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
        masks = {name: self.masks.get_buffer(name) for name in self._masked_names}
        return self.damage.twin_forward(self.model, substitutes, masks, (x, *args), kwargs)

    @torch.no_grad()
    def refresh_mask(self) -> None:
        """Damages the twin again from the current dense weights.

        Asks the strategy for new masks (``damage.compute_masks``); the previous masks
        are discarded, not refined. Random draws are seeded from the wrapper's
        ``mask_seed`` buffer plus the number of earlier refreshes, so all DDP ranks and a
        resumed run draw the same masks.

        Raises:
            ValueError: If a masked weight holds NaN or infinite values, the strategy
                returns masks that do not match the masked parameters, or (for
                ``ChannelDamage(importance="taylor")``) the gradients are already cleared.
        """
        count = int(self.refresh_count)
        masks = self.damage.compute_masks(
            self.model, seed=int(self.mask_seed) + count, first=count == 0
        )
        for name in self._masked_names:
            buffer = self.masks.get_buffer(name)
            mask = masks.get(name)
            if mask is None or mask.shape != buffer.shape or mask.dtype != torch.bool:
                got = None if mask is None else (tuple(mask.shape), mask.dtype)
                raise ValueError(
                    f"{type(self.damage).__name__}.compute_masks() returned {got} for {name!r}; "
                    f"expected a bool mask of shape {tuple(buffer.shape)} for every masked "
                    "parameter."
                )
            buffer.copy_(mask)
        self.refresh_count += 1
        self.damage.masks_changed(self.model, dict(self.named_masks()))

    @property
    def prune_ratio(self) -> float:
        """The strategy's ``prune_ratio``."""
        return self.damage.prune_ratio

    @property
    def random_ratio(self) -> float:
        """The strategy's ``random_ratio``."""
        return self.damage.random_ratio

    @property
    def channel_sparsity(self) -> float:
        """Fraction of channels the twin currently loses entirely, as the strategy counts.

        With ``ChannelDamage``: the realised fraction of the prunable channels (each
        coupled group's channels counted once, as ``prune_ratio`` counts them). With
        ``WeightDamage``: the fraction of the masked layers' output channels whose
        weights happen to be all masked out. Per layer:
        :func:`selfdamage.damage.layer_channel_sparsity`.
        """
        return self.damage.channel_sparsity(self.model, dict(self.named_masks()))

    @property
    def sparsity(self) -> float:
        """Fraction of the masked parameters' entries that the twin currently masks out."""
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
            f"damage={self.damage!r}, twin_norm={self.twin_norm}, "
            f"masked_tensors={len(self._masked_names)}"
        )


def nested_wrapper(module: nn.Module) -> str | None:
    """Qualified name of the first ``SelfDamagingWrapper`` inside ``module``, or None."""
    found: str | None = None
    for name, child in module.named_modules():
        if isinstance(child, SelfDamagingWrapper):
            found = name
            break
    return found


def resolve_damage(
    damage: Damage | None,
    *,
    prune_ratio: float,
    random_ratio: float,
    prunable: Prunable,
    deprecated_options: Mapping[str, Any],
    stacklevel: int,
) -> Damage:
    """The strategy for ``damage=`` and the shorthands, as the wrapper and the adapters read them.

    ``damage=None`` means ``WeightDamage(prune_ratio, random_ratio=..., prunable=...)``;
    with a strategy, every shorthand must be left at its default.

    Raises:
        TypeError: If ``damage`` is neither a ``Damage`` nor None (nor a 0.1 string).
        ValueError: If a shorthand is given together with a strategy.
    """
    options = dict(deprecated_options)
    if isinstance(damage, str):
        options.setdefault("kind", damage)
        damage = None
    kind = options.pop("kind", None)
    if damage is None:
        legacy = legacy_damage(
            kind,
            options,
            prune_ratio=prune_ratio,
            random_ratio=random_ratio,
            prunable=prunable,
            stacklevel=stacklevel + 1,
        )
        if legacy is not None:
            return legacy
        return WeightDamage(prune_ratio, random_ratio=random_ratio, prunable=prunable)
    if not isinstance(damage, Damage):
        raise TypeError(
            "damage must be a selfdamage.damage.Damage strategy or None, got "
            f"damage={damage!r}. Pass e.g. damage=WeightDamage(0.9) or "
            "damage=ChannelDamage(0.5, example_inputs=...)."
        )
    given = [
        f"{name}={value!r}"
        for name, value, default in (
            ("prune_ratio", prune_ratio, DEFAULT_PRUNE_RATIO),
            ("random_ratio", random_ratio, DEFAULT_RANDOM_RATIO),
            ("prunable", prunable, DEFAULT_PRUNABLE),
        )
        if value is not default
    ] + [f"{name}=..." for name, value in options.items() if value is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)} given together with damage={damage!r}; the shorthands "
            f"only describe the default WeightDamage. Set them on the strategy instead, "
            f"e.g. {type(damage).__name__}(prune_ratio=...), or drop damage=."
        )
    return damage


def _masks_loaded(module: nn.Module, _incompatible_keys: Any) -> None:
    """Tells the strategy that a checkpoint replaced the masks."""
    wrapper = cast(SelfDamagingWrapper, module)
    wrapper.damage.masks_changed(wrapper.model, dict(wrapper.named_masks()))


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
