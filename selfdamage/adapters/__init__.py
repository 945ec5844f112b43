"""SDCLR for lightly's two-branch methods: each adapter is a module whose forward is the loss.

- :class:`SimCLRAdapter` (SDCLR as in the paper), :class:`MoCoAdapter` (symmetric MoCo v2),
  :class:`BYOLAdapter`, :class:`SimSiamAdapter`, :class:`NNCLRAdapter`,
  :class:`TiCoAdapter` (symmetric), :class:`DINOAdapter` (two global crops),
  :class:`BarlowTwinsAdapter`, :class:`VICRegAdapter`, :class:`DCLAdapter`, :class:`DCLWAdapter`.
- :class:`TwoViewAdapter`: any method whose step is ``loss(z0, z1)`` on the two projections.
- :class:`SDCLRProjectionHead`: the SDCLR reference code's head, to pass as ``head=``.
- :data:`ADAPTERS`: method name -> adapter class, filled by :func:`register_adapter`.
- :class:`SelfDamagingAdapter`, :class:`PredictorAdapter`, :class:`MomentumAdapter`,
  :class:`Encoder`: the bases, for other methods.

One of the two online passes goes through the damaged twin, the other stays dense; momentum
copies, banks and running statistics follow the dense model; ``baseline=True`` is the base
method. The common interface and the rule: :doc:`/adapters`; each method: :doc:`/methods`.
"""

from __future__ import annotations

from selfdamage.adapters.barlow_twins import BarlowTwinsAdapter
from selfdamage.adapters.base import (
    Encoder,
    MomentumAdapter,
    PredictorAdapter,
    SelfDamagingAdapter,
)
from selfdamage.adapters.byol import BYOLAdapter
from selfdamage.adapters.dcl import DCLAdapter, DCLWAdapter
from selfdamage.adapters.dino import DINOAdapter
from selfdamage.adapters.heads import SDCLRProjectionHead
from selfdamage.adapters.moco import MoCoAdapter
from selfdamage.adapters.nnclr import NNCLRAdapter
from selfdamage.adapters.registry import ADAPTERS, register_adapter
from selfdamage.adapters.simclr import SimCLRAdapter
from selfdamage.adapters.simsiam import SimSiamAdapter
from selfdamage.adapters.tico import TiCoAdapter
from selfdamage.adapters.two_view import TwoViewAdapter
from selfdamage.adapters.vicreg import VICRegAdapter

__all__ = [
    "ADAPTERS",
    "BYOLAdapter",
    "BarlowTwinsAdapter",
    "DCLAdapter",
    "DCLWAdapter",
    "DINOAdapter",
    "Encoder",
    "MoCoAdapter",
    "MomentumAdapter",
    "NNCLRAdapter",
    "PredictorAdapter",
    "SDCLRProjectionHead",
    "SelfDamagingAdapter",
    "SimCLRAdapter",
    "SimSiamAdapter",
    "TiCoAdapter",
    "TwoViewAdapter",
    "VICRegAdapter",
    "register_adapter",
]
