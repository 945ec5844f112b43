"""The :class:`Damage` base: what a kind of self-damage decides, and how the wrapper calls it.

A strategy object in the manner of torch-pruning's ``Importance``: the wrapper owns what
every kind of damage shares (the twin's normalization state, the mask buffers, the seed,
``state_dict``) and asks its ``Damage`` for the rest: which parameters get masks
(:meth:`Damage.bind`, once), the masks at each refresh (:meth:`Damage.compute_masks`) and
how the twin pass runs (:meth:`Damage.twin_forward`).
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from selfdamage._aliasing import call_per_slot, find_aliases
from selfdamage._checks import check_real, name_list
from selfdamage.damage._scope import is_frozen, weight_names, weight_transform
from selfdamage.damage.masks import apply_mask
from selfdamage.damage.reports import weight_channel_sparsity

__all__ = ["Damage", "Prunable", "Settings", "find_prunable"]

Prunable = Union[type, tuple[type, ...], Callable[[str, nn.Module], bool]]
"""Module types whose ``.weight`` is pruned, or a predicate ``(name, module) -> bool``."""

Settings = dict[str, Union[bool, int, float, str]]
"""Plain values that describe a strategy, for ``repr`` and for storing in checkpoints."""


class Damage(abc.ABC):
    """Base of the damage strategies: how a wrapper damages its twin.

    A strategy binds to one model, once: the wrapper calls :meth:`bind` on the bare model
    and allocates one ``bool`` mask buffer for each parameter name it returns. At every
    ``refresh_mask()`` the wrapper calls :meth:`compute_masks` with the current dense
    weights and a seed shared by all DDP ranks and restored with a checkpoint, and copies
    the result into its buffers. Every twin pass goes through :meth:`twin_forward`, whose
    default runs the model with the masked parameters multiplied by their masks; a
    strategy that runs its twin differently (say, a physically smaller copy of the model
    on gathered weights) overrides it, and :meth:`masks_changed` to rebuild what it
    derives from the masks.

    Subclasses implement :meth:`setup` and :meth:`compute_masks`, and extend
    :attr:`settings` with their own options. A strategy holds no tensors the wrapper
    must save: everything that changes during training lives in the wrapper's buffers.

    Args:
        prune_ratio: Fraction of the prunable weights (or channels, ...) the twin loses,
            in ``[0, 1)``.
        random_ratio: Part of ``prune_ratio`` chosen at random, in ``[0, prune_ratio]``.

    Raises:
        TypeError: If a ratio is not a real number.
        ValueError: If a ratio is out of range.

    Examples:
        A twin that loses a random ``prune_ratio`` of every convolution's weights:

        >>> import torch
        >>> from torch import nn
        >>> from selfdamage import SelfDamagingWrapper
        >>> class RandomDamage(Damage):
        ...     def setup(self, model):
        ...         return [n for n, p in model.named_parameters() if p.dim() == 4]
        ...     def compute_masks(self, model, *, seed, first):
        ...         generator = torch.Generator().manual_seed(seed)
        ...         return {
        ...             name: torch.rand(model.get_parameter(name).shape, generator=generator)
        ...             >= self.prune_ratio
        ...             for name in self.param_names
        ...         }
        >>> wrapper = SelfDamagingWrapper(nn.Conv2d(3, 64, 3), damage=RandomDamage(0.5))
        >>> 0.4 < wrapper.sparsity < 0.6
        True
    """

    def __init__(self, prune_ratio: float, *, random_ratio: float = 0.0) -> None:
        self.prune_ratio = check_real("prune_ratio", prune_ratio, 0.0, 1.0, high_open=True)
        self.random_ratio = check_real(
            "random_ratio", random_ratio, 0.0, self.prune_ratio, high_name="prune_ratio"
        )
        self._param_names: list[str] | None = None

    def bind(self, model: nn.Module) -> list[str]:
        """Binds the strategy to ``model``, once; returns the names of the masked parameters.

        Called by the wrapper on the bare model before anything else; runs :meth:`setup`.
        A name that reaches a parameter through a shared submodule or a tied weight is
        replaced by the parameter's first name (the one ``model.named_parameters()``
        yields), so each parameter has one mask.

        Raises:
            ValueError: If the strategy is already bound (build one per wrapper), or
                :meth:`setup` returns no name or a name that is not a parameter of ``model``.
        """
        if self._param_names is not None:
            raise ValueError(
                f"this {type(self).__name__} is already bound to a model; a strategy damages "
                f"one model. Build a new {type(self).__name__}(...) for each wrapper.",
            )
        names = list(self.setup(model))
        if not names:
            raise ValueError(
                f"{type(self).__name__}.setup() selected no parameter of "
                f"{type(model).__name__} to mask; the twin would equal the dense model."
            )
        known = {name for name, _ in model.named_parameters(remove_duplicate=False)}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.setup() returned {unknown[:5]}, which are not "
                "parameters of the model; return qualified names from model.named_parameters()."
            )
        canonical = find_aliases(model).canonical
        names = list(dict.fromkeys(canonical[name] for name in names))
        self._param_names = names
        return list(names)

    @property
    def param_names(self) -> list[str]:
        """Qualified names of the masked parameters, in the order :meth:`bind` returned them.

        Raises:
            RuntimeError: If the strategy is not bound yet.
        """
        if self._param_names is None:
            raise RuntimeError(
                f"{type(self).__name__} is not bound to a model yet; pass it to "
                "SelfDamagingWrapper(model, damage=...) first."
            )
        return list(self._param_names)

    @abc.abstractmethod
    def setup(self, model: nn.Module) -> Sequence[str]:
        """Inspects the bare model once; returns the qualified names of the parameters to mask.

        Everything the strategy learns about the model (layers, channel groups, traced
        graphs) is kept here as plain data, so the strategy survives ``copy.deepcopy``
        and pickling with its wrapper.
        """

    @abc.abstractmethod
    def compute_masks(self, model: nn.Module, *, seed: int, first: bool) -> Mapping[str, Tensor]:
        """The twin's masks from the model's current dense weights.

        Runs under ``torch.no_grad()``. Draw every random number from ``seed`` (for
        instance ``torch.Generator().manual_seed(seed)``), never from the global random
        state: all DDP ranks pass the same seed, a resumed run the same sequence.

        Args:
            model: The bare model the strategy was bound to.
            seed: Seed of this refresh's random draws.
            first: True at the wrapper's construction (no backward pass has run yet).

        Returns:
            ``{name: bool mask}`` for every name in :attr:`param_names`, each the shape
            of its parameter, ``True`` where the twin keeps the entry.
        """

    def twin_forward(
        self,
        model: nn.Module,
        substitutes: Mapping[str, Tensor],
        masks: Mapping[str, Tensor],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        """Runs the twin: ``model`` with masked parameters and the twin's normalization state.

        The default multiplies each masked parameter (or its substitute) by its mask and
        calls ``torch.func.functional_call``, so gradients flow into the shared weights.
        Each ``(module, attribute)`` slot is substituted once, a tied one with its
        tensor's substitute: a submodule
        reachable under two names or a tied weight leaves the dense model unchanged.

        Args:
            model: The bare model.
            substitutes: Tensors to use instead of the model's own, by qualified name
                (each tensor's first name): the twin's normalization parameters and
                running statistics.
            masks: ``{name: bool mask}`` for every masked parameter.
            args: The call's positional inputs.
            kwargs: The call's keyword inputs.

        Returns:
            Whatever the model returns.
        """
        tensors = dict(substitutes)
        for name, mask in masks.items():
            value = tensors.get(name)
            if value is None:
                value = model.get_parameter(name)
            tensors[name] = apply_mask(value, mask)
        return call_per_slot(model, tensors, find_aliases(model).tied, args, kwargs)

    def masks_changed(self, model: nn.Module, masks: Mapping[str, Tensor]) -> None:  # noqa: B027
        """Called after the masks changed (refresh or checkpoint load); does nothing by default.

        A strategy that derives state from the masks for :meth:`twin_forward` (say, the
        kept channel indices of a compact twin) rebuilds it here.
        """

    def channel_sparsity(self, model: nn.Module, masks: Mapping[str, Tensor]) -> float:
        """Fraction of channels the twin loses entirely under ``masks``.

        By default the fraction of the masked layers' output channels whose weights are
        all masked out (:func:`~selfdamage.damage.reports.weight_channel_sparsity`).
        """
        return weight_channel_sparsity(model, masks)

    @property
    def settings(self) -> Settings:
        """The strategy's options as plain values (numbers, strings, bools)."""
        return {"prune_ratio": self.prune_ratio, "random_ratio": self.random_ratio}

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={value!r}" for key, value in self.settings.items())
        return f"{type(self).__name__}({shown})"


def prunable_predicate(prunable: Prunable) -> Callable[[str, nn.Module], bool]:
    """A predicate ``(name, module) -> bool`` for a :data:`Prunable`.

    Raises:
        TypeError: If ``prunable`` is neither types nor a callable.
    """
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


def describe_prunable(prunable: Prunable) -> str:
    """A plain-string description of a :data:`Prunable`, for :attr:`Damage.settings`.

    Examples:
        >>> describe_prunable((nn.Conv2d, nn.Linear))
        'Conv2d,Linear'
    """
    types = (prunable,) if isinstance(prunable, type) else prunable
    if isinstance(types, tuple):
        return ",".join(t.__name__ for t in types)
    return getattr(prunable, "__name__", type(prunable).__name__)


def find_prunable(model: nn.Module, prunable: Prunable) -> list[str]:
    """Qualified names of the weights of the modules ``prunable`` selects, each weight once.

    A selected module contributes its ``.weight`` (an ``nn.MultiheadAttention`` its input
    projection weights). Left out:
    normalization layers, frozen weights (``requires_grad=False``), and weights the
    module's forward does not use as is (weight or spectral normalization,
    parametrizations, weight standardization: masking them would not sparsify the
    layer), these with a ``UserWarning`` that names them. Tied weights count once.

    Raises:
        TypeError: If ``prunable`` is invalid.
        ValueError: If a selected module has no weight parameter, or no weight remains.

    Examples:
        >>> find_prunable(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(2, 2)), nn.Conv2d)
        ['0.weight']
    """
    select = prunable_predicate(prunable)
    found: list[str] = []
    seen: set[int] = set()
    transformed: list[str] = []
    frozen: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) or not select(name, module):
            continue
        for attr in weight_names(module):
            qualified = f"{name}.{attr}" if name else attr
            reason = weight_transform(module, attr)
            if reason is not None:
                transformed.append(f"{qualified!r} ({reason})")
                continue
            weight = getattr(module, attr, None)
            if not isinstance(weight, nn.Parameter):
                raise ValueError(
                    f"prunable selected {name or 'the model'!r} ({type(module).__name__}), "
                    "which has no weight parameter to prune. Select only modules with a "
                    "`.weight` nn.Parameter."
                )
            if id(weight) in seen:  # tied weights are masked once
                continue
            seen.add(id(weight))
            if is_frozen(weight):
                frozen.append(qualified)
            else:
                found.append(qualified)
    if transformed and found:
        warnings.warn(
            f"prunable selected layers whose forward does not use their weight as is: "
            f"{name_list(transformed)}. Masking those weights would not sparsify what the "
            "layers compute, so the twin uses them unmasked and sparsity does not count "
            "them. Remove the weight transform to prune them, or leave them out of "
            "prunable (a predicate (name, module) -> bool) to silence this warning.",
            UserWarning,
            stacklevel=2,
        )
    if not found:
        why = ""
        if transformed:
            why = f" Selected layers that do not use their weight as is: {name_list(transformed)}."
        if frozen:
            why += f" Selected weights that are frozen (requires_grad=False): {name_list(frozen)}."
        raise ValueError(
            f"model has no prunable weights: no module matched prunable={prunable!r} "
            f"in {type(model).__name__} with a trainable weight it uses as is.{why} Pass "
            "the module types to prune, e.g. prunable=(nn.Conv2d, nn.Linear), or a "
            "predicate (name, module) -> bool."
        )
    return found


def non_finite_error(model: nn.Module, names: Sequence[str], consequence: str) -> ValueError | None:
    """The error for masked parameters holding NaN or infinite values, or None if all are finite.

    Args:
        model: The bare model.
        names: The masked parameters' qualified names.
        consequence: What is undefined because of it, e.g. ``"the pruning threshold"``.
    """
    bad = [name for name in names if not bool(torch.isfinite(model.get_parameter(name)).all())]
    if not bad:
        return None
    return ValueError(
        f"weights contain NaN or infinite values in {bad}; {consequence} is undefined. "
        "Check the training for divergence (learning rate, loss scaling)."
    )
