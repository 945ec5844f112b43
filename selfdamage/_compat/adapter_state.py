"""Adapter ``state_dict`` files from before the method state was saved: selfdamage 0.1 and 0.2.

0.1 and 0.2 wrote an adapter's ``state_dict`` without lightly's method state (MoCo's
``loss.memory_bank.bank`` and ``bank_ptr``, NNCLR's ``memory_bank.*``, TiCo's ``loss.C``).
:func:`~selfdamage.adapters.method_state.persist_method_state` registers the pre-hook made
here on each owner of such state, so those files still load with ``strict=True``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["state_without"]


class _KeepWhenAbsent:
    """Load pre-hook: a ``state_dict`` without ``names`` leaves them as they are.

    A class rather than a closure, so that the module still pickles (``torch.save(model)``,
    spawned workers).
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def __call__(
        self, module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
    ) -> None:
        for name in self.names:
            state_dict.setdefault(prefix + name, getattr(module, name))


def state_without(names: tuple[str, ...]) -> _KeepWhenAbsent:
    """A load pre-hook for a ``state_dict`` that lacks the buffers ``names``: they stay as is.

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> loss = NTXentLoss(memory_bank_size=(8, 4))
        >>> loss.memory_bank.register_buffer("bank_ptr", loss.memory_bank.bank_ptr)
        >>> hook = state_without(("bank_ptr",))
        >>> handle = loss.memory_bank.register_load_state_dict_pre_hook(hook)
        >>> loss.load_state_dict({})  # as 0.1 and 0.2 wrote it
        <All keys matched successfully>
    """
    return _KeepWhenAbsent(names)
