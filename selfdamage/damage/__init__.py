"""Damage strategies: how the twin is damaged, as objects passed to the wrapper.

- :class:`Damage` — the base: bind to a model once, compute masks at each refresh, run
  the twin pass. Subclass it for a new kind of damage (see :doc:`/architecture`).
- :class:`WeightDamage` — the paper: global unstructured magnitude pruning.
- :class:`ChannelDamage` — structured: whole channels, coupled by torch-pruning.

Behind them, one concern per module: :mod:`~selfdamage.damage.masks` (mask maths),
:mod:`~selfdamage.damage.selection` (channel selection maths),
:mod:`~selfdamage.damage.tracing` (the channel groups, as plain data, read from
torch-pruning's dependency graph), :mod:`~selfdamage.damage.reshapes` (reshapes it cannot
follow), :mod:`~selfdamage.damage.importance` (channel scores), :mod:`~selfdamage.damage.reports`
(sparsity read from masks), :mod:`~selfdamage.damage.compact` (the compact channel twin).
"""

from __future__ import annotations

from selfdamage.damage.base import Damage, Prunable, Settings
from selfdamage.damage.channel import ChannelDamage
from selfdamage.damage.importance import IMPORTANCES, ImportanceLike, make_importance
from selfdamage.damage.reports import (
    group_channel_sparsity,
    layer_channel_sparsity,
    weight_channel_sparsity,
)
from selfdamage.damage.reshapes import unfollowable_reshapes
from selfdamage.damage.selection import DEFAULT_MAX_CHANNEL_RATIO, global_channel_masks
from selfdamage.damage.tracing import ChannelGroup
from selfdamage.damage.weight import WeightDamage

__all__ = [
    "DEFAULT_MAX_CHANNEL_RATIO",
    "IMPORTANCES",
    "ChannelDamage",
    "ChannelGroup",
    "Damage",
    "ImportanceLike",
    "Prunable",
    "Settings",
    "WeightDamage",
    "global_channel_masks",
    "group_channel_sparsity",
    "layer_channel_sparsity",
    "make_importance",
    "unfollowable_reshapes",
    "weight_channel_sparsity",
]
