"""Method state in the adapter's ``state_dict``: lightly's memory banks, TiCo's covariance."""

from __future__ import annotations

import torch
from lightly.loss import TiCoLoss
from lightly.models.modules.memory_bank import MemoryBankModule
from torch import nn

from selfdamage._compat.adapter_state import state_without

__all__ = ["persist_method_state"]


def persist_method_state(module: nn.Module, projection_dim: int | None) -> None:
    """Makes the lightly method state inside ``module`` part of its ``state_dict``.

    Every enabled ``MemoryBankModule``'s ``bank`` and ``bank_ptr`` (a disabled one holds
    nothing) and every ``TiCoLoss``'s ``C``, a float32 ``(D, D)`` buffer of zeros (or its
    current value), become persistent buffers. A ``state_dict`` that lacks exactly these
    keys loads with ``strict=True`` and leaves them as they are. Why: :doc:`/adapters`.

    Args:
        module: The adapter (or any module holding lightly losses and banks).
        projection_dim: ``D``, the projection size a ``TiCoLoss`` sees; None if unknown.

    Raises:
        ValueError: If ``module`` holds a never-called ``TiCoLoss`` and ``projection_dim``
            is None.

    Examples:
        >>> from lightly.loss import NTXentLoss
        >>> loss = NTXentLoss(memory_bank_size=(8, 4))
        >>> sorted(loss.state_dict())
        []
        >>> persist_method_state(loss, None)
        >>> sorted(loss.state_dict())
        ['memory_bank.bank', 'memory_bank.bank_ptr']
        >>> tico = TiCoLoss()
        >>> persist_method_state(tico, 4)
        >>> tico.state_dict()["C"].shape
        torch.Size([4, 4])
    """
    for owner in module.modules():
        if isinstance(owner, MemoryBankModule) and owner.size[0] > 0:
            for name in ("bank", "bank_ptr"):
                owner.register_buffer(name, getattr(owner, name), persistent=True)
            owner.register_load_state_dict_pre_hook(state_without(("bank", "bank_ptr")))
        elif isinstance(owner, TiCoLoss) and "C" in vars(owner):  # still lightly's attribute
            covariance = owner.C
            if covariance is None:
                if projection_dim is None:
                    raise ValueError(
                        "TiCoLoss's running covariance C must be in the state_dict, but "
                        "projection_dim=None: its size (D, D) is unknown. Pass the "
                        "projection dimension D, e.g. the head's last nn.Linear out_features."
                    )
                covariance = torch.zeros(projection_dim, projection_dim)
            del owner.C  # a plain attribute; register_buffer refuses to shadow it
            owner.register_buffer("C", covariance, persistent=True)
            owner.register_load_state_dict_pre_hook(state_without(("C",)))
