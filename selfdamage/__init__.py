"""selfdamage: Self-Damaging Contrastive Learning (SDCLR) for any PyTorch model.

The public API, at a glance:

- :class:`SelfDamagingWrapper` — wrap any backbone; ``wrapper(x)`` is the dense model,
  ``wrapper.damaged(x)`` its damaged twin, ``wrapper.refresh_mask()`` damages it again.
- :mod:`selfdamage.damage` — how the twin is damaged: :class:`Damage` (the base),
  :class:`WeightDamage` (the paper), :class:`ChannelDamage` (whole channels).
- :mod:`selfdamage.adapters` — ``SimCLRAdapter``, ``MoCoAdapter``, ``BYOLAdapter``,
  ``BarlowTwinsAdapter``, ``VICRegAdapter``, ``DCLAdapter``, ``DCLWAdapter``: lightly's
  methods with one online pass through the twin; ``forward(x0, x1)`` returns the loss.
  ``TwoViewAdapter`` does it for any loss on the two online projections.
- :mod:`selfdamage.lightning` — ``SelfDamagingCallback`` refreshes masks in PyTorch Lightning.
- :mod:`selfdamage.data` — long-tailed subsets, dataset loaders, two-view datasets.
- :mod:`selfdamage.evaluation` — linear probe, kNN, Many/Medium/Few accuracy, damage scores.
- :mod:`selfdamage.study` — the long-tail study behind ``selfdamage longtail``.
- :mod:`selfdamage.masks <selfdamage.damage.masks>`, :mod:`selfdamage.twin_norm` — the
  mask maths, the twin's BatchNorm state.
- :mod:`selfdamage.backbones` — ``cifar_resnet18``, the paper's small-image backbone.
"""

from __future__ import annotations

from selfdamage._compat import module_names
from selfdamage.damage import ChannelDamage, Damage, WeightDamage
from selfdamage.wrapper import SelfDamagingWrapper

module_names.install()

#: The installed version of selfdamage, as in ``pip show selfdamage``.
__version__ = "1.0.0.dev0"

__all__ = ["ChannelDamage", "Damage", "SelfDamagingWrapper", "WeightDamage", "__version__"]
