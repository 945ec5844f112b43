"""Study checkpoints of 0.2: the memory banks beside the model's ``state_dict``.

0.2 kept lightly's memory banks (``bank`` and ``bank_ptr`` by qualified name) under a
separate ``"memory_banks"`` entry, and its ``state_dict`` had no bank keys. 1.0 holds the
banks as persistent buffers in the model's ``state_dict``, so moving them into ``"model"``
is all a 0.2 checkpoint needs to resume exactly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["upgrade_study_checkpoint"]


def upgrade_study_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint ``state`` as the current study writes it (``state`` is not changed).

    Examples:
        >>> old = {"model": {"w": 1}, "memory_banks": {"loss.memory_bank.bank": 2}}
        >>> upgrade_study_checkpoint(old)
        {'model': {'w': 1, 'loss.memory_bank.bank': 2}}
        >>> upgrade_study_checkpoint({"model": {"w": 1}})
        {'model': {'w': 1}}
    """
    if "memory_banks" not in state:
        return state
    upgraded = {key: value for key, value in state.items() if key != "memory_banks"}
    upgraded["model"] = {**state["model"], **state["memory_banks"]}
    return upgraded
