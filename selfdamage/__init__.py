"""selfdamage: Self-Damaging Contrastive Learning (SDCLR) for any PyTorch model.

The public API, at a glance:

- :class:`SelfDamagingWrapper` — wrap any backbone; ``wrapper(x)`` is the dense model,
  ``wrapper.damaged(x)`` its pruned twin, ``wrapper.refresh_mask()`` re-prunes.
- :mod:`selfdamage.masks` — the mask maths as pure functions.
- :mod:`selfdamage.twin_norm` — the twin's own BatchNorm state.
"""

from __future__ import annotations

from selfdamage.wrapper import SelfDamagingWrapper

__version__ = "0.1.0"

__all__ = ["SelfDamagingWrapper", "__version__"]
