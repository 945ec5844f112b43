"""Checks: one vocabulary for every error the package raises on a bad argument or use.

Every argument check returns the value (converted where it says so) or raises with one
message form: ``"NAME must be ..., got NAME=VALUE."`` followed, where it helps, by how to
fix it. ``TypeError`` for a value of the wrong kind, ``ValueError`` for one out of range.

The checks on how a wrapper is used say the fix too:

- :func:`check_placement`: the model was moved (``model.to(...)``, ``model.double()``)
  without the wrapper's twin state; O(1), run at every twin pass.
- :func:`masks_error`: masks from a strategy that do not fit the masked parameters.
- :func:`warn_fully_masked`: masks that remove a whole tensor (the twin may output a
  constant); one host sync, run at every refresh and mask load.
- :func:`optimizer_error`: an optimizer that misses trainable parameters of the wrapper.
- :func:`parallel_error`: a model already wrapped in ``DataParallel`` or
  ``DistributedDataParallel``, at construction.
- :func:`lazy_error`: a model whose lazy modules have not run yet, at construction.

This module imports nothing from the package, so any module may use it.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Collection, Iterable, Mapping

import torch
from torch import Tensor, nn

__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_module",
    "check_placement",
    "check_real",
    "lazy_error",
    "masks_error",
    "name_list",
    "optimizer_error",
    "parallel_error",
    "warn_fully_masked",
]


def _fail(error: type[Exception], name: str, what: str, value: object, fix: str) -> Exception:
    return error(f"{name} must be {what}, got {name}={value!r}." + (f" {fix}" if fix else ""))


def check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    high_name: str = "",
    what: str = "",
    fix: str = "",
) -> float:
    """``value`` as a ``float`` if it is a finite real number (not a bool) within the bounds.

    NaN and infinity are always rejected: NaN passes every comparison, and no argument
    of the package means anything at infinity.

    Args:
        name: The argument's name, as the caller spells it.
        value: The value passed.
        low: Lower bound, or None for none.
        high: Upper bound, or None for none.
        low_open: If True, ``low`` itself is excluded.
        high_open: If True, ``high`` itself is excluded.
        high_name: Shown for the upper bound as ``high_name=high`` when it is another
            argument's value.
        what: Replaces the range in the message, e.g. ``"a momentum in [0, 1]"``.
        fix: How to fix it, appended to the message.

    Raises:
        TypeError: If ``value`` is not a real number.
        ValueError: If it is NaN, infinite or out of range.

    Examples:
        >>> check_real("prune_ratio", 0.5, 0.0, 1.0, high_open=True)
        0.5
        >>> check_real("prune_ratio", 1.0, 0.0, 1.0, high_open=True)
        Traceback (most recent call last):
        ...
        ValueError: prune_ratio must be in [0.0, 1.0), got prune_ratio=1.0.
        >>> check_real("prune_ratio", float("nan"), 0.0, 1.0, high_open=True)
        Traceback (most recent call last):
        ...
        ValueError: prune_ratio must be a finite number in [0.0, 1.0), got prune_ratio=nan.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(TypeError, name, "a float", value, fix)
    number = float(value)
    if not math.isfinite(number):
        bounded = low is not None or high is not None
        shown = f"({what})" if what else _range(low, high, low_open, high_open, high_name)
        finite = f"a finite number {shown}" if what or bounded else "a finite number"
        raise _fail(ValueError, name, finite, number, fix)
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        what = what or _range(low, high, low_open, high_open, high_name)
        raise _fail(ValueError, name, what, number, fix)
    return number


def check_int(
    name: str,
    value: object,
    low: int | None = None,
    high: int | None = None,
    *,
    what: str = "",
    fix: str = "",
) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``[low, high]``.

    ``what`` replaces the range in the message (e.g. ``"positive"``).

    Raises:
        TypeError: If ``value`` is not an integer.
        ValueError: If it is out of range.

    Examples:
        >>> check_int("n_max", 3, 1)
        3
        >>> check_int("n_max", 0, 1)
        Traceback (most recent call last):
        ...
        ValueError: n_max must be >= 1, got n_max=0.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(TypeError, name, "an int", value, fix)
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        what = what or (f">= {low}" if high is None else f"in [{low}, {high}]")
        raise _fail(ValueError, name, what, number, fix)
    return number


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a ``bool``.

    Examples:
        >>> check_bool("twin_norm", 1)
        Traceback (most recent call last):
        ...
        TypeError: twin_norm must be a bool, got twin_norm=1.
    """
    if not isinstance(value, bool):
        raise _fail(TypeError, name, "a bool", value, "")
    return value


def check_choice(name: str, value: object, options: Collection[object], *, fix: str = "") -> str:
    """``value`` if it is one of ``options`` (strings).

    Examples:
        >>> check_choice("importance", "l1", ("magnitude", "lamp"))
        Traceback (most recent call last):
        ...
        ValueError: importance must be one of 'magnitude', 'lamp', got importance='l1'.
    """
    if not isinstance(value, str) or value not in options:
        shown = ", ".join(repr(option) for option in options)
        raise _fail(ValueError, name, f"one of {shown}", value, fix)
    return value


def check_module(name: str, value: object) -> nn.Module:
    """``value`` if it is an ``nn.Module``; the message names the type it got.

    Examples:
        >>> check_module("head", "mlp")
        Traceback (most recent call last):
        ...
        TypeError: head must be a torch.nn.Module, got str.
    """
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}.")
    return value


def _range(
    low: float | None, high: float | None, low_open: bool, high_open: bool, high_name: str
) -> str:
    # Bounds print as the caller wrote them: 0 and 1 as "0, 1", 0.0 as "0.0".
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    upper = f"{high_name}={high}" if high_name else f"{high}"
    return f"in {'(' if low_open else '['}{low}, {upper}{')' if high_open else ']'}"


def name_list(items: Collection[str], n: int = 5) -> str:
    """The first ``n`` of ``items`` for a message, with how many more; ``"none"`` if empty.

    Examples:
        >>> name_list(["a", "b", "c"], n=2), name_list([])
        ('a, b, ... (1 more)', 'none')
    """
    if not items:
        return "none"
    shown = list(items)[:n]
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(shown) + more


def check_placement(
    model: nn.Module, masks: nn.Module, twin_norms: nn.Module, masked: str, twin: str | None
) -> None:
    """Raises if ``model`` was moved without the twin state: one mask, one twin norm compared.

    Args:
        model: The bare model.
        masks: The wrapper's mask tree.
        twin_norms: The wrapper's twin normalization tree.
        masked: One masked parameter's qualified name.
        twin: One normalization layer with twin state, or None.

    Raises:
        RuntimeError: If the masked parameter is on another device than its mask, or the
            twin norm's state has another device or dtype than the dense layer's.
    """
    pairs = [(masked, model.get_parameter(masked), masks.get_buffer(masked))]
    if twin is not None:
        state = twin_norms.get_submodule(twin) if twin else twin_norms
        attr = "weight" if isinstance(state.weight, Tensor) else "running_mean"
        pairs.append(
            (f"{twin}.{attr}", getattr(model.get_submodule(twin), attr), getattr(state, attr))
        )
    for what, dense, own in pairs:
        same_dtype = own.dtype == torch.bool or own.dtype == dense.dtype
        if dense.device != own.device or not same_dtype:
            raise RuntimeError(
                f"the model was moved without its wrapper: {what} is {dense.dtype} on "
                f"{dense.device}, but the twin's state (masks, twin BatchNorm) is "
                f"{own.dtype} on {own.device}. Move the wrapper, not wrapper.model: "
                "wrapper.to(...), wrapper.double() (or the adapter or LightningModule that "
                "holds it), which moves the model with it."
            )


def masks_error(
    strategy: str, own: Mapping[str, Tensor], masks: Mapping[str, Tensor]
) -> ValueError | None:
    """The error for masks that a strategy computed but that do not fit, or None.

    Args:
        strategy: The strategy's class name.
        own: The wrapper's masks, by masked parameter name.
        masks: The masks the strategy returned.

    Examples:
        >>> own = {"w": torch.ones(2, dtype=torch.bool)}
        >>> print(masks_error("MyDamage", own, {"w": torch.ones(3, dtype=torch.bool)}))
        MyDamage.compute_masks() returned ((3,), torch.bool) for 'w'; expected a bool mask of shape (2,) for every masked parameter.
    """  # noqa: E501
    for name, buffer in own.items():
        mask = masks.get(name)
        if mask is None or mask.shape != buffer.shape or mask.dtype != torch.bool:
            got = None if mask is None else (tuple(mask.shape), mask.dtype)
            return ValueError(
                f"{strategy}.compute_masks() returned {got} for {name!r}; expected a bool "
                f"mask of shape {tuple(buffer.shape)} for every masked parameter."
            )
    return None


def warn_fully_masked(
    named_masks: Iterable[tuple[str, Tensor]], warned: set[frozenset[str]]
) -> None:
    """Warns about masks that remove a whole tensor, once per distinct set of names.

    Args:
        named_masks: ``(qualified name, bool mask)`` pairs.
        warned: The sets already warned about; updated in place.
    """
    pairs = list(named_masks)
    if not pairs or pairs[0][1].device.type == "meta":
        return
    empty = torch.stack([~mask.any() for _, mask in pairs]).tolist()  # one host sync
    names = [name for (name, _), gone in zip(pairs, empty) if gone]
    if not names or frozenset(names) in warned:
        return
    warned.add(frozenset(names))
    warnings.warn(
        f"the twin masks every entry of {', '.join(repr(n) for n in names)}: layers whose "
        "weights are all small fall entirely under the global threshold, and a twin that "
        "loses a whole layer may output a constant that does not depend on its input. "
        "Lower prune_ratio, or leave these layers out of prunable (a predicate "
        "(name, module) -> bool, e.g. lambda name, m: isinstance(m, nn.Conv2d) and "
        "m.groups == 1).",
        UserWarning,
        stacklevel=2,
    )


def optimizer_error(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    optimizers: Iterable[torch.optim.Optimizer],
) -> ValueError | None:
    """The error for trainable parameters that none of ``optimizers`` updates, or None."""
    held = {id(p) for opt in optimizers for group in opt.param_groups for p in group["params"]}
    missing = [name for name, p in named_parameters if p.requires_grad and id(p) not in held]
    if not missing:
        return None
    return ValueError(
        f"optimizer does not update {len(missing)} trainable parameters of the wrapper: "
        f"{name_list(missing)}. Build the optimizer from wrapper.parameters() (or "
        "the adapter's or LightningModule's parameters()), not model.parameters(): the "
        "twin's BatchNorm parameters live in the wrapper."
    )


def lazy_error(model: nn.Module) -> ValueError | None:
    """The error for a model with uninitialized (lazy) parameters or buffers, or None.

    A lazy module (``nn.LazyConv2d``, ``nn.LazyLinear``, ``nn.LazyBatchNorm2d``, ...)
    learns its shapes at its first forward pass; until then its tensors have no shape,
    and the twin's masks and normalization state cannot be built.

    Examples:
        >>> lazy_error(nn.Linear(2, 2)) is None
        True
        >>> print(lazy_error(nn.Sequential(nn.LazyLinear(2))))  # doctest: +ELLIPSIS
        model has uninitialized (lazy) parameters or buffers: '0.weight' (LazyLinear), ...
    """
    found = [
        (f"{prefix}.{name}" if prefix else name, type(module).__name__)
        for prefix, module in model.named_modules()
        for name, tensor in (
            *module.named_parameters(recurse=False),
            *module.named_buffers(recurse=False),
        )
        if nn.parameter.is_lazy(tensor)
    ]
    if not found:
        return None
    listed = name_list([f"{name!r} ({kind})" for name, kind in found])
    return ValueError(
        f"model has uninitialized (lazy) parameters or buffers: {listed}. The twin's "
        "masks need their shapes. Run one forward pass with an example batch before "
        "wrapping, so the lazy modules know their shapes: model(x), then "
        "SelfDamagingWrapper(model)."
    )


def parallel_error(model: nn.Module) -> TypeError | None:
    """The error for a model that is or holds a ``DataParallel`` or DDP module, or None.

    The twin pass runs the model through ``torch.func.functional_call``, which refuses
    ``nn.DataParallel``; DDP synchronizes gradients once per forward of the module it
    wraps, but the wrapper would run it twice (dense and twin) before one backward. The
    parallel module goes around the wrapper, or the adapter that holds it, instead.
    """
    parallel = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, parallel)), None)
    if found is None:
        return None
    name, module = found
    kind = type(module).__name__
    if isinstance(module, nn.DataParallel):
        why = "torch.func.functional_call, which runs the twin pass, cannot run DataParallel"
    else:
        why = (
            "DDP synchronizes gradients once per forward, and the wrapper would run it twice "
            "(dense and twin pass) before one backward"
        )
    where = f"model is a {kind}" if not name else f"model holds a {kind} at {name!r}"
    bare = "SelfDamagingWrapper(model.module)"
    if name:
        bare = f"model.{name} = model.{name}.module before wrapping"
    return TypeError(
        f"{where}: {why}. Wrap the bare model ({bare}), then wrap the wrapper, or the "
        "adapter that holds it, in DistributedDataParallel, with the dense and the twin "
        "pass in one forward (adapter(x0, x1)); see 'Distributed training' in the docs."
    )
