"""0.1's private home of the adapter bases; they are public in :mod:`selfdamage.adapters` now."""

from __future__ import annotations

from selfdamage.adapters.base import Encoder, MomentumAdapter, SelfDamagingAdapter

__all__ = ["Encoder", "MomentumAdapter", "SelfDamagingAdapter"]
