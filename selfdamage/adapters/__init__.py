"""SDCLR for lightly's two-branch methods: each adapter is a module whose forward is the loss.

- :class:`SimCLRAdapter` — SimCLR with a damaged twin: SDCLR as in the paper.
- :class:`MoCoAdapter` — symmetric MoCo v2: momentum key encoder, memory bank.
- :class:`BYOLAdapter` — BYOL: predictor, momentum target network.
- :class:`SimSiamAdapter` — SimSiam: predictor, stop-gradient targets.
- :class:`NNCLRAdapter` — NNCLR: nearest neighbours from a support set of dense projections.
- :class:`TiCoAdapter` — symmetric TiCo: momentum targets, a running covariance.
- :class:`DINOAdapter` — DINO on two global crops: momentum teacher, centering.
- :class:`BarlowTwinsAdapter`, :class:`VICRegAdapter`, :class:`DCLAdapter`,
  :class:`DCLWAdapter` — Barlow Twins, VICReg, DCL and DCLW: a loss on the two projections.
- :class:`TwoViewAdapter` — any method whose step is ``loss(z0, z1)`` on the two online
  projections, with your head and loss (the base of SimCLR and the four above).
- :class:`SDCLRProjectionHead` — the SDCLR reference code's 3-layer projection head, to
  pass as ``head=``.
- :data:`ADAPTERS` — method name -> adapter class; each adapter registers itself with
  :func:`register_adapter` where it is defined.
- :class:`SelfDamagingAdapter`, :class:`PredictorAdapter`, :class:`MomentumAdapter`,
  :class:`Encoder` — the bases, for a method that is not a loss on two projections.

The rule they share: the base method makes two online passes per step with a symmetric
loss; SDCLR sends one of them through the damaged twin (``wrapper.damaged``) and the other
through the dense model, and changes nothing else, so a step costs what a step of the base
method costs. ``baseline=True`` gives the base method itself, for fair baselines. SDCLR
defines only the SimCLR variant; for the other methods, damaging one of the two online
passes is this library's choice, following the paper's argument that the idea applies to
any two-branch method. Momentum copies, banks and running statistics follow the *dense*
model, the one that is evaluated: the twin never feeds them.

Common interface: ``Adapter(backbone, feature_dim, prune_ratio, *, head=, loss=, ...,
**options)`` with the method's own options and the wrapper options (``damage=``,
``baseline=``, ``random_ratio=``, ``prunable=``, ``twin_norm=``:
:class:`~selfdamage.adapters.wrapper_options.WrapperOptions`); ``loss = adapter(x0, x1)``, or
``loss, per_sample = adapter(x0, x1, return_per_sample=True)`` (each sample's loss, no
extra pass; not for Barlow Twins and VICReg);
``adapter.refresh_mask()`` once per epoch; ``adapter.embed(x)`` for dense features;
``adapter.wrapper`` (the :class:`~selfdamage.wrapper.SelfDamagingWrapper`),
``adapter.damage`` (the strategy), ``adapter.baseline`` and ``adapter.backbone``. MoCo,
BYOL, TiCo and DINO add ``update_momentum(m)``. Method state (memory banks, NNCLR's support set,
TiCo's covariance) is in the ``state_dict``, see
:func:`~selfdamage.adapters.method_state.persist_method_state`.
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
