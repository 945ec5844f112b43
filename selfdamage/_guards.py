"""Cheap checks on how a wrapper is used, each with an error or warning that says the fix.

- :func:`check_placement`: the model was moved (``model.to(...)``, ``model.double()``)
  without the wrapper's twin state; O(1), run at every twin pass.
- :func:`warn_fully_masked`: masks that remove a whole tensor (the twin may output a
  constant); one host sync, run at every refresh.
- :func:`optimizer_error`: an optimizer that misses trainable parameters of the wrapper.
- :func:`parallel_error`: a model already wrapped in ``DataParallel`` or
  ``DistributedDataParallel``, at construction.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["check_placement", "optimizer_error", "parallel_error", "warn_fully_masked"]


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
        stacklevel=5,
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
    more = f", ... ({len(missing) - 5} more)" if len(missing) > 5 else ""
    return ValueError(
        f"optimizer does not update {len(missing)} trainable parameters of the wrapper: "
        f"{', '.join(missing[:5])}{more}. Build the optimizer from wrapper.parameters() (or "
        "the adapter's or LightningModule's parameters()), not model.parameters(): the "
        "twin's BatchNorm parameters live in the wrapper."
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
