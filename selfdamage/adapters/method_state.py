"""Method state in the adapter's ``state_dict``: lightly's memory banks, TiCo's covariance.

lightly keeps some of a method's state where ``state_dict`` does not see it: a
``MemoryBankModule`` (MoCo's ``NTXentLoss`` bank, NNCLR's ``NNMemoryBankModule``) registers
``bank`` and ``bank_ptr`` with ``persistent=False``, and ``TiCoLoss`` keeps its running
covariance ``C`` as a plain attribute, ``None`` until its first call. A checkpoint of the
``state_dict`` alone would then resume with a fresh bank or covariance, and a resumed run
would not continue exactly. :func:`persist_method_state`, called once by every adapter's
``__init__``, makes all of it persistent buffers, under the adapter's own names
(``loss.memory_bank.bank``, ``memory_bank.bank_ptr``, ``loss.C``).

Nothing changes in the numbers: the bank keeps its content and its order, and ``C`` starts
as the zeros that lightly's lazy initialisation creates.
"""

from __future__ import annotations

import torch
from lightly.loss import TiCoLoss
from lightly.models.modules.memory_bank import MemoryBankModule
from torch import nn

from selfdamage._compat.adapter_state import state_without

__all__ = ["persist_method_state"]


def persist_method_state(module: nn.Module, projection_dim: int | None) -> None:
    """Makes the lightly method state inside ``module`` part of its ``state_dict``.

    - Every enabled ``MemoryBankModule`` (``size[0] > 0``): ``bank`` and ``bank_ptr``
      become persistent, re-registered with ``register_buffer(..., persistent=True)``.
      A disabled bank (``NTXentLoss(memory_bank_size=0)``, SimCLR's) holds nothing and
      stays out of the ``state_dict``.
    - Every ``TiCoLoss``: ``C`` becomes a persistent buffer, zeros of shape ``(D, D)``
      (or its current value if it was called before), ``D = projection_dim``. lightly
      creates it lazily as ``B.new_zeros(B.shape)`` on the first call, with the dtype and
      device of that batch; the buffer is float32 from the start and follows the module
      through ``.to()``. Without autocast the numbers are the same (lightly's first update
      is ``0.9 * 0 + 0.1 * B`` either way); under bf16 autocast lightly's lazy ``C``
      would be bf16, this one stays float32 (``beta * C + (1 - beta) * B`` promotes to
      float32), so the running covariance accumulates at full precision.

    Each owner also gets the load pre-hook of ``selfdamage._compat.adapter_state``: a
    ``state_dict`` that lacks exactly these keys loads with ``strict=True`` and
    leaves the bank or covariance as it is; every other missing key is still reported.

    Args:
        module: The adapter (or any module holding lightly losses and banks).
        projection_dim: The dimension ``D`` of the projections that a ``TiCoLoss`` sees;
            None if unknown (then ``module`` must not hold a fresh ``TiCoLoss``).

    Raises:
        ValueError: If ``module`` holds a ``TiCoLoss`` that was never called and
            ``projection_dim`` is None.

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
