"""SDCLR for lightly's two-branch methods: each adapter is a module whose forward is the loss.

- :class:`SimCLRAdapter` — SimCLR with a damaged twin: SDCLR as in the paper.
- :class:`MoCoAdapter` — symmetric MoCo v2: momentum key encoder, memory bank.
- :class:`BYOLAdapter` — BYOL: predictor, momentum target network.
- :class:`NNCLRAdapter` — NNCLR: nearest neighbours from a support set of dense projections.
- :class:`TiCoAdapter` — symmetric TiCo: momentum targets, a running covariance.
- :data:`ADAPTERS` — method name -> adapter class; :func:`register_adapter` adds one.
- :class:`SelfDamagingAdapter`, :class:`MomentumAdapter`, :class:`Encoder` — the bases,
  for a fourth method.

The rule they share: the base method makes two online passes per step with a symmetric
loss; SDCLR sends one of them through the damaged twin (``wrapper.damaged``) and the other
through the dense model, and changes nothing else, so a step costs what a step of the base
method costs. ``baseline=True`` gives the base method itself, for fair baselines.

Common interface: ``Adapter(backbone, feature_dim, prune_ratio, *, head=, loss=, damage=,
baseline=, random_ratio=, prunable=, twin_norm=)``; ``loss = adapter(x0, x1)``;
``adapter.refresh_mask()`` once per epoch; ``adapter.embed(x)`` for dense features;
``adapter.wrapper`` (the :class:`~selfdamage.wrapper.SelfDamagingWrapper`),
``adapter.damage`` (the strategy), ``adapter.baseline`` and ``adapter.backbone``. MoCo,
BYOL and TiCo add ``update_momentum(m)``. Method state (memory banks, NNCLR's support set,
TiCo's covariance) is in the ``state_dict``, see
:func:`~selfdamage.adapters.method_state.persist_method_state`.
"""

from __future__ import annotations

from selfdamage.adapters.base import Encoder, MomentumAdapter, SelfDamagingAdapter
from selfdamage.adapters.byol import BYOLAdapter
from selfdamage.adapters.moco import MoCoAdapter
from selfdamage.adapters.nnclr import NNCLRAdapter
from selfdamage.adapters.registry import ADAPTERS, register_adapter
from selfdamage.adapters.simclr import SimCLRAdapter
from selfdamage.adapters.tico import TiCoAdapter

__all__ = [
    "ADAPTERS",
    "BYOLAdapter",
    "Encoder",
    "MoCoAdapter",
    "MomentumAdapter",
    "NNCLRAdapter",
    "SelfDamagingAdapter",
    "SimCLRAdapter",
    "TiCoAdapter",
    "register_adapter",
]
