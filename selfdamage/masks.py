"""The mask maths under its public top-level name: the objects of :mod:`selfdamage.damage.masks`.

Examples:
    >>> import selfdamage.damage.masks
    >>> global_magnitude_masks is selfdamage.damage.masks.global_magnitude_masks
    True
"""

from __future__ import annotations

from selfdamage.damage.masks import (
    apply_mask,
    global_magnitude_masks,
    kth_smallest,
    num_to_prune,
    smallest_k_mask,
)

__all__ = [
    "apply_mask",
    "global_magnitude_masks",
    "kth_smallest",
    "num_to_prune",
    "smallest_k_mask",
]
