"""Compact twins pickled by 0.2: they predate the mask check after each refresh.

0.2's :class:`~selfdamage.damage.compact.CompactTwin` had no ``_unchecked`` (the dead
channels its next twin pass compares the masks with); without it there is nothing to
check, which ``None`` says.
"""

from __future__ import annotations

from typing import Any

__all__ = ["upgrade_compact_twin_state"]


def upgrade_compact_twin_state(state: dict[str, Any]) -> dict[str, Any]:
    """A pickled compact twin's ``__dict__`` as the current class holds it (``state`` unchanged).

    Examples:
        >>> upgrade_compact_twin_state({"active": True})
        {'_unchecked': None, 'active': True}
        >>> upgrade_compact_twin_state({"_unchecked": [1]})
        {'_unchecked': [1]}
    """
    return {"_unchecked": None, **state}
