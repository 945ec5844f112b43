"""The long-tail study: a base method against SDCLR under one protocol.

For every class order and seed, the study pretrains the base method (``baseline``) and
SDCLR (``sdclr``) with identical settings (backbone, heads, augmentations, data order,
initial weights, schedule) on the same long-tailed subset, and, optionally, the base method
on a balanced subset of the same size (``balanced``), which shows what the imbalance costs
at all; then evaluates each with the paper's protocol (linear probe on a balanced labeled
set, Many / Medium / Few accuracy, kNN, damage-score AUROC).

One stage per module:

- :mod:`~selfdamage.study.config` — :class:`StudyConfig`, every option (the CLI derives from it);
- :mod:`~selfdamage.study.data` — loading the dataset;
- :mod:`~selfdamage.study.models` — backbones and the method table (the adapters);
- :mod:`~selfdamage.study.training` — pretraining, checkpoints, exact resumption;
- :mod:`~selfdamage.study.evaluation` — the evaluation protocol;
- ``selfdamage.study.stats``, :mod:`~selfdamage.study.report` — summary, 95% intervals,
  table, chart;
- :mod:`~selfdamage.study.runner` — the schedule of runs, ``jobs``; the variants it trains
  (``--variants``: a base with the plug-ins ``+bcl``, ``+ts``, ``+gh``) are parsed and run by
  internal modules;
- ``selfdamage.study.outputs`` — the study folder: its settings record, resuming in it;
- :mod:`~selfdamage.study.budget` — fitting a study into a time budget.

Examples:
    >>> from selfdamage.study import StudyConfig, run_study
    >>> results = run_study(StudyConfig(out_dir="runs/longtail", epochs=1))  # doctest: +SKIP
"""

from __future__ import annotations

from selfdamage._compat.removed import removed_name_error
from selfdamage.study.config import StudyConfig
from selfdamage.study.data import DATASETS
from selfdamage.study.evaluation import METRICS
from selfdamage.study.models import BACKBONES, METHODS
from selfdamage.study.report import format_table
from selfdamage.study.runner import VARIANTS, run_study

__all__ = [
    "BACKBONES",
    "DATASETS",
    "METHODS",
    "METRICS",
    "VARIANTS",
    "StudyConfig",
    "format_table",
    "run_study",
]


def __getattr__(name: str) -> object:
    """Only for names that are not here: a removed one raises the error naming its replacement."""
    error = removed_name_error(f"{__name__}.{name}")
    if error is not None:
        raise error
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
