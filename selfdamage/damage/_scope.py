"""The twin's scope: which weights a strategy may mask, and how much of the model they cover.

Pure functions on modules, shared by the strategies and the wrapper:

- :func:`is_frozen` and :func:`all_frozen`: parameters with ``requires_grad=False`` (a
  momentum copy kept inside the model) are outside the twin's scope.
- :func:`weight_names`: the weights of a selected layer (``weight``; an
  ``nn.MultiheadAttention``'s input projections).
- :func:`weight_transform`: why a layer's forward does not use its weight as is (weight
  or spectral normalization, a parametrization, weight standardization), so that masking
  it would not sparsify what the layer computes.
- :func:`weight_coverage`: how much of the model's trainable weights is masked, per kind.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils import parametrize

from selfdamage._modules import forward_pre_hooks

__all__ = [
    "STANDARDIZING_CLASSES",
    "all_frozen",
    "coverage_warning",
    "is_frozen",
    "module_kind",
    "weight_coverage",
    "weight_names",
    "weight_transform",
]

STANDARDIZING_CLASSES = frozenset(
    {"StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame"}
)
"""Class names of layers known to standardize their weight in ``forward`` (timm's)."""


def is_frozen(param: Tensor) -> bool:
    """Whether a parameter is frozen (``requires_grad=False``), hence outside the twin's scope.

    Examples:
        >>> is_frozen(nn.Linear(2, 2).weight.requires_grad_(False))
        True
    """
    return not param.requires_grad


def all_frozen(module: nn.Module) -> bool:
    """Whether ``module`` has parameters of its own and all of them are frozen.

    A normalization layer for which this holds (say, in a momentum copy) gets no twin
    state. A layer without parameters (``affine=False``) is not frozen.

    Examples:
        >>> bn = nn.BatchNorm2d(4)
        >>> all_frozen(bn), all_frozen(bn.requires_grad_(False))
        (False, True)
        >>> all_frozen(nn.BatchNorm2d(4, affine=False))
        False
    """
    params = list(module.parameters(recurse=False))
    return bool(params) and all(is_frozen(p) for p in params)


def weight_names(module: nn.Module) -> list[str]:
    """Names of the weights a selected layer contributes to the twin's masks.

    ``weight`` for every layer but ``nn.MultiheadAttention``, whose input projections are
    ``in_proj_weight`` (or ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight`` when
    key and value dimensions differ); its ``out_proj`` is an ``nn.Linear`` of its own.

    Examples:
        >>> weight_names(nn.MultiheadAttention(8, 2))
        ['in_proj_weight']
        >>> weight_names(nn.MultiheadAttention(8, 2, kdim=4, vdim=4))
        ['q_proj_weight', 'k_proj_weight', 'v_proj_weight']
    """
    if isinstance(module, nn.MultiheadAttention):
        if module.in_proj_weight is not None:  # query, key and value of one size
            return ["in_proj_weight"]
        return ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
    return ["weight"]


def weight_transform(module: nn.Module, name: str = "weight") -> str | None:
    """Why ``module``'s forward does not use its ``name`` parameter as is, or None if it does.

    Masking such a weight does not zero what the layer computes with: weight
    normalization rescales the masked direction, standardization subtracts the mean.
    Detected: a parametrization (``torch.nn.utils.parametrizations.weight_norm``,
    ``spectral_norm``, ...), a weight computed by a forward pre-hook
    (``torch.nn.utils.weight_norm``/``spectral_norm``), a class of
    :data:`STANDARDIZING_CLASSES`, and any ``nn.Linear``/convolution subclass whose
    overridden ``forward`` is not linear in its weight (tried once on a small input drawn
    from a private generator: the global random state is not touched).

    Examples:
        >>> conv = nn.Conv2d(2, 2, 3)
        >>> weight_transform(conv) is None
        True
        >>> weight_transform(nn.utils.parametrizations.weight_norm(conv))
        'its weight is parametrized (ParametrizationList)'
    """
    if parametrize.is_parametrized(module, name):
        return "its weight is parametrized (ParametrizationList)"
    value = getattr(module, name, None)
    if isinstance(value, Tensor) and not isinstance(value, nn.Parameter):
        hooks = [type(hook).__name__ for hook in forward_pre_hooks(module)]
        return (
            f"its weight is computed before each forward ({', '.join(hooks) or 'not a parameter'})"
        )
    if type(module).__name__ in STANDARDIZING_CLASSES:
        return f"{type(module).__name__} standardizes its weight in forward"
    if name == "weight" and isinstance(value, nn.Parameter) and not _linear_in_weight(module):
        return "its forward is not linear in its weight (e.g. weight standardization)"
    return None


def _torch_base(module: nn.Module) -> type | None:
    """The ``nn.Linear`` or convolution class ``module`` derives from, if it overrides forward."""
    for base in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d):
        if isinstance(module, base) and type(module).forward is not base.forward:
            return base
    return None


@torch.no_grad()
def _linear_in_weight(module: nn.Module) -> bool:
    """Whether ``f(2 W) - f(0) == 2 (f(W) - f(0))`` on a small probe input (True if untried)."""
    base = _torch_base(module)
    weight = module.get_parameter("weight")
    if base is None or weight.device.type == "meta" or not weight.is_floating_point():
        return True
    if isinstance(module, nn.Linear):
        shape: tuple[int, ...] = (2, module.in_features)
    else:  # a convolution: an input big enough for one output position or more
        conv = cast(nn.Conv2d, module)
        spatial = [k * d + 2 for k, d in zip(conv.kernel_size, conv.dilation)]
        shape = (1, conv.in_channels, *spatial)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64).to(weight)
    try:
        out = [functional_call(module, {"weight": s * weight}, (x,)) for s in (0.0, 1.0, 2.0)]
    except Exception:
        return True
    change, doubled = out[2] - out[0], 2 * (out[1] - out[0])
    scale = float(doubled.abs().max()) + 1e-12
    return bool(((change - doubled).abs().max() <= 1e-3 * scale).item())


def module_kind(module: nn.Module) -> str:
    """The name of the public ``torch.nn`` class ``module`` is (or derives from), else its own.

    Examples:
        >>> module_kind(nn.MultiheadAttention(4, 1).out_proj)
        'Linear'
    """
    for cls in type(module).__mro__:
        if getattr(nn, cls.__name__, None) is cls:
            return str(cls.__name__)
    return type(module).__name__


def weight_coverage(
    model: nn.Module, masked: Collection[str]
) -> dict[str, tuple[int, int, list[tuple[str, int]]]]:
    """Per kind of layer: masked and total trainable weights, and the unmasked ones.

    *Weights* are the parameters with ``dim() >= 2`` that require a gradient, each tied
    tensor once; biases and normalization parameters (1-d) are not counted, nor frozen
    parameters (outside the twin's scope).

    Args:
        model: The bare model.
        masked: Qualified names of the masked parameters.

    Returns:
        ``{kind: (masked numel, total numel, [(unmasked name, numel), ...])}``, the kind
        being :func:`module_kind` of the layer owning the weight.

    Examples:
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 4))
        >>> {k: v[:2] for k, v in weight_coverage(model, ["0.weight"]).items()}
        {'Conv2d': (18, 18), 'Linear': (0, 8)}
    """
    found: dict[str, tuple[int, int, list[tuple[str, int]]]] = {}
    for name, param in model.named_parameters():  # tied parameters are yielded once
        if param.dim() < 2 or is_frozen(param):
            continue
        path = name.rpartition(".")[0]
        if ".parametrizations." in f".{path}.":  # the parametrized layer owns its originals
            path = f".{path}".partition(".parametrizations.")[0][1:]
        owner = model.get_submodule(path)
        done, total, unmasked = found.get(module_kind(owner), (0, 0, []))
        if name in masked:
            done += param.numel()
        else:
            unmasked.append((name, param.numel()))
        found[module_kind(owner)] = (done, total + param.numel(), unmasked)
    return found


def coverage_warning(
    model: nn.Module, masked: Collection[str], prunable: object, *, threshold: float = 0.5
) -> str | None:
    """The warning for a twin that masks less than ``threshold`` of the weights, or None.

    Args:
        model: The bare model.
        masked: Qualified names of the masked parameters.
        prunable: The strategy's ``settings["prunable"]`` (type names joined by commas),
            or None.
        threshold: Warn below this share of the weights (:func:`weight_coverage`).

    Examples:
        >>> model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Flatten(), nn.Linear(9, 9))
        >>> print(coverage_warning(model, ["0.weight"], "Conv2d"))  # doctest: +ELLIPSIS
        the twin masks only 1.2% of ... pass prunable=(nn.Conv2d, nn.Linear,).
    """
    found = weight_coverage(model, set(masked))
    total = sum(t for _, t, _ in found.values())
    done = sum(m for m, _, _ in found.values())
    if total == 0 or done >= threshold * total:
        return None
    unmasked = sorted(
        ((size, name, kind) for kind, (_, _, names) in found.items() for name, size in names),
        key=lambda item: -item[0],
    )
    biggest = ", ".join(f"{name!r} ({kind}, {size:,})" for size, name, kind in unmasked[:3])
    named = str(prunable).split(",") if isinstance(prunable, str) else []
    kinds = list(dict.fromkeys([*named, *(kind for _, _, kind in unmasked[:5])]))
    if named and kinds == named:
        fix = "see the warning above: prunable selects them, but the twin cannot mask them"
    elif named and all(isinstance(getattr(nn, t, None), type) for t in named):
        fix = f"pass prunable=({', '.join(f'nn.{k}' for k in kinds)},)"
    else:
        fix = "select them in the strategy (prunable types or predicate)"
    return (
        f"the twin masks only {done / total:.1%} of the model's trainable weights "
        f"(parameters with dim >= 2; see wrapper.coverage and wrapper.coverage_by_kind); "
        f"the rest runs undamaged in the twin. The largest unmasked: {biggest}. To damage "
        f"them, {fix}."
    )
