"""Long-tail tools beyond SDCLR: BCL, temperature schedules, geometric harmonization.

Each composes with the damaged twin and with lightly's losses; the "Long-tail toolkit" page
(:doc:`/toolkit`) says what each does, how it was checked against its authors' code, and
what has not been measured here.

- BCL (Zhou et al., ICML 2022): :class:`MomentumLoss` keeps each sample's momentum loss,
  :class:`MomentumBoostedDataset` augments a sample as strongly as that loss says;
  :func:`per_sample_loss` gives the per-sample contrastive losses it needs.
- Temperature schedules (Kukleva et al., ICLR 2023): :class:`CosineTemperature`,
  :class:`ConstantTemperature`, :func:`set_temperature`.
- Geometric harmonization (Zhou et al., NeurIPS 2023): :class:`GeometricHarmonization` and
  its target, :func:`simplex_etf`.
"""

from selfdamage.longtail.boosted_augment import (
    BoostedRandAugment,
    MomentumBoostedDataset,
    bcl_base_transform,
    boost_strength,
)
from selfdamage.longtail.harmonization import GeometricHarmonization, harmonization_loss, sinkhorn
from selfdamage.longtail.momentum_loss import MomentumLoss, normalize_momentum_loss
from selfdamage.longtail.per_sample import (
    dcl_per_sample,
    ntxent_per_sample,
    per_sample_loss,
    record_per_sample,
    why_no_per_sample,
)
from selfdamage.longtail.simplex_etf import simplex_etf
from selfdamage.longtail.temperature import (
    ConstantTemperature,
    CosineTemperature,
    TemperatureSchedule,
    set_temperature,
    temperature_of,
)

__all__ = [
    "BoostedRandAugment",
    "ConstantTemperature",
    "CosineTemperature",
    "GeometricHarmonization",
    "MomentumBoostedDataset",
    "MomentumLoss",
    "TemperatureSchedule",
    "bcl_base_transform",
    "boost_strength",
    "dcl_per_sample",
    "harmonization_loss",
    "normalize_momentum_loss",
    "ntxent_per_sample",
    "per_sample_loss",
    "record_per_sample",
    "set_temperature",
    "simplex_etf",
    "sinkhorn",
    "temperature_of",
    "why_no_per_sample",
]
