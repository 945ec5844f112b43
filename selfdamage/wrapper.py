"""SelfDamagingWrapper: any model plus a pruned, weight-sharing twin of it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase
from torch.nn.modules.module import _IncompatibleKeys

from selfdamage._checkpoint import (
    EXTRA_STATE_KEY,
    decode_settings,
    encode_settings,
    settings_error,
    shape_error,
)
from selfdamage._checks import (
    check_bool,
    check_module,
    check_placement,
    lazy_error,
    masks_error,
    optimizer_error,
    parallel_error,
    warn_fully_masked,
)
from selfdamage._compat.removed import refuses_removed_arguments
from selfdamage._compat.wrapper_state import with_settings
from selfdamage._compat.wrapper_state import wrapper_module_attribute as __getattr__  # noqa: F401
from selfdamage._default_damage import DEFAULT_PRUNABLE as DEFAULT_PRUNABLE
from selfdamage._default_damage import DEFAULT_PRUNE_RATIO as DEFAULT_PRUNE_RATIO
from selfdamage._default_damage import DEFAULT_RANDOM_RATIO as DEFAULT_RANDOM_RATIO
from selfdamage._default_damage import resolve_damage as resolve_damage
from selfdamage._loaded_masks import settle_loaded_masks
from selfdamage._mirror import build_mirror, get_at
from selfdamage._warnings import warns_at_caller
from selfdamage.damage._scope import all_frozen, coverage_warning, weight_coverage
from selfdamage.damage.base import Damage, Prunable
from selfdamage.twin_norm import TwinNorm, has_running_stats, throwaway_statistics

__all__ = ["SelfDamagingWrapper"]


class _Masks(nn.Module):
    """Holds the ``bool`` masks of one layer's parameters, as buffers of the same names."""

    def __init__(self, params: Mapping[str, Tensor]) -> None:
        super().__init__()
        for name, param in params.items():
            self.register_buffer(name, torch.ones_like(param, dtype=torch.bool))


class SelfDamagingWrapper(nn.Module):
    """Wraps a model and gives it a damaged twin that shares its weights (SDCLR [0]).

    ``wrapper(x)`` is the dense model, unchanged. ``wrapper.damaged(x)`` runs the twin:
    the same weights under ``bool`` masks (with :class:`~selfdamage.damage.WeightDamage`,
    every masked parameter multiplied by its mask; a strategy may run a physically
    smaller copy instead, as :class:`~selfdamage.damage.ChannelDamage` does) and, with
    ``twin_norm=True``, the twin's own BatchNorm parameters and running statistics in
    place of the dense ones. Both branches back-propagate into the shared weights, so
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
        twin_norm: If True, every BatchNorm layer (all ``_BatchNorm`` subclasses,
            ``SyncBatchNorm`` included) and every ``InstanceNorm`` layer with
            ``track_running_stats=True`` gets, for the twin only, its own affine
            parameters and running statistics, initialised from the dense ones. If
            False, the twin uses the dense layers' parameters but never updates their
            running statistics.
        damage: The damage strategy, bound to ``model`` here (one strategy per wrapper);
            None for ``WeightDamage(prune_ratio, random_ratio=..., prunable=...)``.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``, is already a wrapper, is or
            holds a ``DataParallel`` or ``DistributedDataParallel`` (wrap the bare model,
            then parallelize the wrapper), or an argument has the wrong type.
        ValueError: If a ratio is out of range, a shorthand is given together with
            ``damage``, the strategy is already bound, ``model`` has uninitialized
            (lazy) parameters or buffers (run one forward pass before wrapping), nothing
            is selected for masking, or the weights are not finite.

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

    @warns_at_caller
    @refuses_removed_arguments
    def __init__(
        self,
        model: nn.Module,
        prune_ratio: float = DEFAULT_PRUNE_RATIO,
        *,
        random_ratio: float = DEFAULT_RANDOM_RATIO,
        prunable: Prunable = DEFAULT_PRUNABLE,
        twin_norm: bool = True,
        damage: Damage | None = None,
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
        for error in (parallel_error(model), lazy_error(model)):
            if error is not None:
                raise error
        self.twin_norm = check_bool("twin_norm", twin_norm)
        self.damage = resolve_damage(
            damage, prune_ratio=prune_ratio, random_ratio=random_ratio, prunable=prunable
        )
        self.model = model
        self._masked_names = self.damage.bind(model)
        self.masks = build_mirror(_mask_leaves(model, self._masked_names))
        norms = {
            name: module
            for name, module in model.named_modules()
            if isinstance(module, _BatchNorm) or has_running_stats(module)  # InstanceNorm too
        }
        # A layer whose parameters are all frozen (a momentum copy) gets no twin state.
        twins = {name: m for name, m in norms.items() if twin_norm and not all_frozen(m)}
        self._twin_names = list(twins)
        self._shared_norm_names = [name for name in norms if name not in twins]
        self.twin_norms = build_mirror({name: TwinNorm(m) for name, m in twins.items()})
        self._warned_fully_masked: set[frozenset[str]] = set()
        # Seed of the random part of the mask. A buffer, so DDP broadcasts rank 0's value
        # and a checkpoint resumes the same sequence of masks.
        seed = torch.randint(0, 2**62, (), dtype=torch.int64)
        self.register_buffer("mask_seed", seed)
        self.register_buffer("refresh_count", torch.zeros((), dtype=torch.int64))
        self.masks.register_load_state_dict_post_hook(self._masks_loaded)
        self.refresh_mask()
        message = coverage_warning(model, self._masked_names, self.damage.settings.get("prunable"))
        if message is not None:
            warnings.warn(message, UserWarning, stacklevel=2)

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
        twin = self._twin_names[0] if self._twin_names else None
        check_placement(self.model, self.masks, self.twin_norms, self._masked_names[0], twin)
        substitutes: dict[str, Tensor] = {}
        for name in self._twin_names:
            twin = cast(TwinNorm, get_at(self.twin_norms, name))
            substitutes.update(twin.substitutes(name))
        for name in self._shared_norm_names:
            norm = cast(_NormBase, self.model.get_submodule(name))
            if norm.training and has_running_stats(norm):
                substitutes.update(throwaway_statistics(norm, name))
        masks = {name: self.masks.get_buffer(name) for name in self._masked_names}
        return self.damage.twin_forward(self.model, substitutes, masks, (x, *args), kwargs)

    @warns_at_caller
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
        own = dict(self.named_masks())
        error = masks_error(type(self.damage).__name__, own, masks)
        if error is not None:
            raise error
        for name, buffer in own.items():
            buffer.copy_(masks[name])
        self.refresh_count += 1
        self.damage.masks_changed(self.model, own)
        warn_fully_masked(own.items(), self._warned_fully_masked)

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

    @property
    def coverage(self) -> float:
        """Fraction of the model's trainable weights that the twin masks.

        *Weights* are the parameters with ``dim() >= 2`` that require a gradient, each
        tied tensor once (biases, normalization parameters and frozen parameters are not
        counted). A ``UserWarning`` at construction names the largest unmasked weights
        when this is below one half.

        Examples:
            >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2))
            >>> wrapper = SelfDamagingWrapper(model, 0.5)
            >>> wrapper.coverage, wrapper.coverage_by_kind
            (0.8181818181818182, {'Conv2d': (36, 36), 'Linear': (0, 8)})
        """
        by_kind = self.coverage_by_kind.values()
        total = sum(total for _, total in by_kind)
        return sum(masked for masked, _ in by_kind) / total if total else 1.0

    @property
    def coverage_by_kind(self) -> dict[str, tuple[int, int]]:
        """``{kind: (masked, total)}`` trainable weights per ``torch.nn`` layer class."""
        found = weight_coverage(self.model, set(self._masked_names))
        return {kind: (masked, total) for kind, (masked, total, _) in found.items()}

    def check_optimizer(self, *optimizers: torch.optim.Optimizer) -> None:
        """Checks that the optimizers update every trainable parameter of the wrapper.

        An optimizer built from ``model.parameters()`` before wrapping misses the twin's
        BatchNorm parameters, which then never train. Frozen parameters are not required.

        Raises:
            ValueError: If a trainable parameter is in none of ``optimizers``.

        Examples:
            >>> wrapper = SelfDamagingWrapper(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
            >>> wrapper.check_optimizer(torch.optim.SGD(wrapper.parameters(), lr=0.1))
            >>> wrapper.check_optimizer(torch.optim.SGD(wrapper.model.parameters(), lr=0.1))
            Traceback (most recent call last):
            ...
            ValueError: optimizer does not update 2 trainable parameters of the wrapper: ...
        """
        error = optimizer_error(self.named_parameters(), optimizers)
        if error is not None:
            raise error

    def get_extra_state(self) -> Tensor:
        """The strategy's class name and settings, stored in the ``state_dict``."""
        return encode_settings(type(self.damage).__name__, self.damage.settings)

    def set_extra_state(self, state: Any) -> None:
        """Checks the checkpoint's damage settings against the wrapper's.

        Raises:
            ValueError: If a setting differs; the settings belong to the checkpoint.
        """
        own = decode_settings(self.get_extra_state())
        error = settings_error(decode_settings(state), own)
        if error is not None:
            raise error

    def named_masks(self) -> Iterator[tuple[str, Tensor]]:
        """Yields ``(qualified parameter name, bool mask)`` for every masked parameter.

        Examples:
            >>> wrapper = SelfDamagingWrapper(nn.Sequential(nn.Conv2d(3, 4, 3)), 0.5)
            >>> [(name, mask.dtype) for name, mask in wrapper.named_masks()]
            [('0.weight', torch.bool)]
        """
        for name in self._masked_names:
            yield name, self.masks.get_buffer(name)

    @warns_at_caller
    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> _IncompatibleKeys:
        """``nn.Module.load_state_dict``; tensors of other shapes or other damage settings raise.

        Raises:
            ValueError: Before any wrapper tensor is copied, if a tensor's shape or a damage
                setting differs from the wrapper's; wherever the wrapper sits in the module.
        """
        return cast(_IncompatibleKeys, super().load_state_dict(state_dict, strict, assign))

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
        """Checks shapes and settings of the whole wrapper before anything is copied.

        Runs wherever the wrapper sits (at the root, inside an adapter or a LightningModule).
        Missing and unexpected keys are reported by ``load_state_dict``, as for any module.
        """
        state_dict = with_settings(state_dict, prefix, self.get_extra_state())
        own = {prefix + k: v for k, v in self.state_dict().items()}
        given = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
        error = shape_error(own, given)
        if error is not None:
            raise error
        saved = state_dict.get(prefix + EXTRA_STATE_KEY)
        if saved is not None:
            self.set_extra_state(saved)  # before anything is copied
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _masks_loaded(self, _masks: nn.Module, _incompatible_keys: Any) -> None:
        """Load post-hook of ``self.masks``: runs whenever the masks are loaded, alone or not."""
        settle_loaded_masks(
            self.masks,
            self._masked_names,
            damage=self.damage,
            model=self.model,
            warned=self._warned_fully_masked,
        )

    def extra_repr(self) -> str:
        return (
            f"damage={self.damage!r}, twin_norm={self.twin_norm}, "
            f"masked_tensors={len(self._masked_names)}"
        )


def nested_wrapper(module: nn.Module) -> str | None:
    """Qualified name of the first ``SelfDamagingWrapper`` inside ``module``, or None."""
    found = (name for name, m in module.named_modules() if isinstance(m, SelfDamagingWrapper))
    return next(found, None)


def _mask_leaves(model: nn.Module, param_names: list[str]) -> dict[str, nn.Module]:
    """One ``_Masks`` holder per module, for the given qualified parameter names."""
    by_module: dict[str, dict[str, Tensor]] = {}
    for name in param_names:
        path, _, attr = name.rpartition(".")
        by_module.setdefault(path, {})[attr] = model.get_parameter(name)
    return {path: _Masks(params) for path, params in by_module.items()}
