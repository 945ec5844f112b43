"""The study's files as 0.1 and 0.2 wrote them: checkpoints and the settings record.

- 0.2 kept lightly's memory banks (``bank`` and ``bank_ptr`` by qualified name) under a
  separate ``"memory_banks"`` entry of a checkpoint, and its ``state_dict`` had no bank
  keys. 1.0 holds the banks as persistent buffers in the model's ``state_dict``, so moving
  them into ``"model"`` is all such a checkpoint needs to resume exactly
  (:func:`upgrade_study_checkpoint`).
- 0.1 and 0.2 wrote no ``settings.json``: a study folder of theirs records its settings
  under ``"settings"`` in ``results.json`` (:data:`FALLBACK_SETTINGS_RECORDS`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FALLBACK_SETTINGS_RECORDS", "upgrade_study_checkpoint"]

FALLBACK_SETTINGS_RECORDS = (("results.json", "settings"),)
"""Where a study folder without ``settings.json`` records its settings: (file, key)."""


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
