"""What a wrapper's checkpoint holds besides tensors of the model: the damage settings.

The strategy's :attr:`~selfdamage.damage.Damage.settings` (plain values) and its class
name are stored in the wrapper's ``state_dict`` as its ``_extra_state``: JSON text in a
``uint8`` tensor, so that every entry of the ``state_dict`` stays a tensor (tools that
compare, average or save state dicts as tensors keep working) and checkpoints load with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from selfdamage._checks import name_list

__all__ = ["EXTRA_STATE_KEY", "decode_settings", "encode_settings", "settings_error", "shape_error"]

EXTRA_STATE_KEY = "_extra_state"
_PLAIN = (bool, int, float, str, type(None))


def encode_settings(strategy: str, settings: Mapping[str, Any]) -> Tensor:
    """The settings as JSON text in a ``uint8`` tensor, with the strategy's class name.

    Examples:
        >>> decode_settings(encode_settings("WeightDamage", {"prune_ratio": 0.5}))
        {'strategy': 'WeightDamage', 'prune_ratio': 0.5}
    """
    plain: dict[str, Any] = {"strategy": strategy}
    plain.update({k: v for k, v in settings.items() if isinstance(v, _PLAIN)})
    data = json.dumps(plain).encode("utf-8")
    return torch.tensor(list(data), dtype=torch.uint8)


def decode_settings(value: Any) -> dict[str, Any]:
    """The settings stored by :func:`encode_settings` (a plain ``dict`` is accepted too).

    Raises:
        ValueError: If ``value`` is not stored settings.
    """
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Tensor) and value.dtype == torch.uint8 and value.dim() == 1:
        decoded = json.loads(bytes(value.tolist()).decode("utf-8"))
        if isinstance(decoded, dict):
            return decoded
    raise ValueError(
        f"the checkpoint's {EXTRA_STATE_KEY} is not a wrapper's damage settings, got "
        f"{type(value).__name__}; load a state_dict saved from a SelfDamagingWrapper."
    )


def settings_error(saved: Mapping[str, Any], own: Mapping[str, Any]) -> ValueError | None:
    """The error for a checkpoint whose damage settings differ from the wrapper's, or None.

    Examples:
        >>> print(settings_error({"prune_ratio": 0.5}, {"prune_ratio": 0.9}))
        ... # doctest: +ELLIPSIS
        checkpoint was saved with other damage settings than this wrapper's: prune_ratio: ...
    """
    absent = "(absent)"
    differing = [
        f"{key}: checkpoint {saved.get(key, absent)!r}, wrapper {own.get(key, absent)!r}"
        for key in dict.fromkeys([*saved, *own])
        if saved.get(key, absent) != own.get(key, absent)
    ]
    if not differing:
        return None
    return ValueError(
        "checkpoint was saved with other damage settings than this wrapper's: "
        f"{'; '.join(differing)}. The damage settings belong to the checkpoint: build the "
        "wrapper (or adapter) with the checkpoint's settings, e.g. "
        "SelfDamagingWrapper(model, damage=WeightDamage(prune_ratio=...)), then load; or "
        "load only the model's weights into wrapper.model."
    )


def shape_error(own: Mapping[str, Any], given: Mapping[str, Any]) -> ValueError | None:
    """The error for a load of tensors whose shapes differ from the wrapper's, or None.

    Only the keys both hold are compared; missing and unexpected keys are PyTorch's to
    report (``load_state_dict`` returns them, and raises for them in a strict load).

    Args:
        own: The wrapper's own state dict, keys with the load's prefix.
        given: The checkpoint's entries under that prefix.

    Examples:
        >>> import torch
        >>> print(shape_error({"w": torch.ones(2)}, {"w": torch.ones(3), "b": torch.ones(1)}))
        ... # doctest: +ELLIPSIS
        state_dict does not match this SelfDamagingWrapper's architecture (shape mismatch: w: checkpoint (3,) vs wrapper (2,)). ...
        >>> shape_error({"w": torch.ones(2)}, {}) is None
        True
    """  # noqa: E501
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs wrapper {tuple(own[k].shape)}"
        for k, v in given.items()
        if k in own
        and not k.endswith(EXTRA_STATE_KEY)
        and isinstance(v, Tensor)
        and v.shape != own[k].shape
    ]
    if not mismatched:
        return None
    return ValueError(
        "state_dict does not match this SelfDamagingWrapper's architecture "
        f"(shape mismatch: {name_list(mismatched)}). Load a checkpoint saved from a "
        "wrapper around the same model with the same prunable, twin_norm and "
        "damage settings, or load the bare weights into wrapper.model."
    )
