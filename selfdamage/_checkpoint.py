"""What a wrapper's checkpoint holds besides tensors of the model: the damage settings.

The strategy's :attr:`~selfdamage.damage.Damage.settings` (plain values) and its class
name are stored in the wrapper's ``state_dict`` as its ``_extra_state``: JSON text in a
``uint8`` tensor, so that every entry of the ``state_dict`` stays a tensor (tools that
compare, average or save state dicts as tensors keep working) and checkpoints load with
``torch.load(..., weights_only=True)``. A checkpoint written by 0.1 has no such entry and
loads as before.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "architecture_error",
    "decode_settings",
    "encode_settings",
    "load_is_strict",
    "settings_error",
]

EXTRA_STATE_KEY = "_extra_state"
_PLAIN = (bool, int, float, str, type(None))
_LOAD_STATE_DICT = nn.Module.load_state_dict.__code__


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


def load_is_strict() -> bool:
    """The ``strict`` of the ``Module.load_state_dict`` call now running; True if none is.

    ``Module.load_state_dict`` passes ``strict=True`` to every module's
    ``_load_from_state_dict`` whatever its caller asked for, and applies the caller's
    ``strict`` only to the missing and unexpected keys it reports after the load. A
    module anywhere in the tree (the wrapper inside an adapter or a LightningModule,
    whose ``load_from_checkpoint(..., strict=False)`` calls the root's
    ``load_state_dict``) reads the caller's value from the innermost frame of that call.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is _LOAD_STATE_DICT:
            return bool(frame.f_locals.get("strict", True))
        frame = frame.f_back
    return True


def architecture_error(
    own: Mapping[str, Any], given: Mapping[str, Any], prefix: str, *, strict: bool = True
) -> ValueError | None:
    """The error for a load of a state dict of another architecture, or None.

    A strict load must match the keys and shapes; a non-strict load only the shapes of
    the keys it shares with the wrapper (PyTorch rejects other shapes in both modes).

    Args:
        own: The wrapper's own state dict, keys with ``prefix``.
        given: The checkpoint's entries under ``prefix``.
        prefix: The wrapper's prefix in the load.
        strict: Whether the load is strict.
    """
    optional = prefix + EXTRA_STATE_KEY  # absent from 0.1 checkpoints; not a shape
    missing = [k for k in own if k not in given and k != optional] if strict else []
    unexpected = [k for k in given if k not in own] if strict else []
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs wrapper {tuple(own[k].shape)}"
        for k, v in given.items()
        if k in own and k != optional and isinstance(v, Tensor) and v.shape != own[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return None
    return ValueError(
        "state_dict does not match this SelfDamagingWrapper's architecture "
        f"(missing: {_head(missing)}; unexpected: {_head(unexpected)}; "
        f"shape mismatch: {_head(mismatched)}). Load a checkpoint saved from a "
        "wrapper around the same model with the same prunable, twin_norm and "
        "damage settings, or load the bare weights into wrapper.model."
    )


def _head(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
