"""The schedule of runs: one per variant x class order x seed, in order or in parallel.

A run's initial weights come from its seed and its data order from (seed, epoch); its
subset from its class order. Nothing depends on its position in the schedule or on
``jobs``, and every run uses ``threads`` CPU threads, so ``jobs=2`` gives exactly the
numbers of ``jobs=1``. Each run writes ``runs/<name>.json`` and
``checkpoints/<name>.pt``; the summary is made when all are done. Every file is written
whole or not at all (``_files``), so a study stopped at any moment can be resumed.

The folder's settings record, and what resuming checks: ``selfdamage.study.outputs``.
"""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from selfdamage._warnings import warns_at_caller
from selfdamage.data import LongTailSplit, balanced_indices
from selfdamage.study._files import write_json
from selfdamage.study._plugins import study_temperature
from selfdamage.study._preflight import check_device, check_fits_data
from selfdamage.study._provenance import provenance as study_provenance
from selfdamage.study._variants import Variant, parse_variant, study_variants
from selfdamage.study.config import StudyConfig
from selfdamage.study.data import OWN_DATASETS, StudyData, load_data
from selfdamage.study.evaluation import evaluate
from selfdamage.study.models import build_model
from selfdamage.study.outputs import (
    check_resumable,
    make_folders,
    remove_previous_runs,
    write_settings,
)
from selfdamage.study.own_data import load_own_data
from selfdamage.study.profile import describe_data, group_thresholds, probe_shots, training_split
from selfdamage.study.report import one_line, plot, summarize, title
from selfdamage.study.training import TrainSettings, pretrain

__all__ = ["VARIANTS", "RunSpec", "run_study", "schedule"]

logger = logging.getLogger(__name__)

VARIANTS = ("baseline", "sdclr", "balanced")
"""The default design's variants, which are also the bases of every variant name
(see :class:`~selfdamage.study.config.StudyConfig`'s ``variants``)."""


@dataclass(frozen=True)
class RunSpec:
    """One run of the schedule.

    Examples:
        >>> RunSpec("sdclr", order=1, seed=0).name
        'sdclr-order1-seed0'
    """

    variant: str
    order: int
    seed: int

    @property
    def name(self) -> str:
        """The run's name, which its files in ``runs/`` and ``checkpoints/`` are named after."""
        return f"{self.variant}-order{self.order}-seed{self.seed}"


def schedule(config: StudyConfig) -> list[RunSpec]:
    """The runs of a study, class order by class order, seed by seed, variant by variant.

    The variants are the config's (its ``variants``, else the default design), by
    canonical name.

    Examples:
        >>> [r.name for r in schedule(StudyConfig(seeds=(0, 1)))][1:3]
        ['sdclr-order0-seed0', 'baseline-order0-seed1']
    """
    variants = [variant.name for variant in study_variants(config)]
    return [
        RunSpec(variant, order, seed)
        for order in range(config.class_orders)
        for seed in config.seeds
        for variant in variants
    ]


@warns_at_caller
def run_study(config: StudyConfig) -> dict[str, Any]:
    """Pretrains the base method and SDCLR on long-tailed data and evaluates both.

    Writes ``settings.json`` (the resolved configuration, before any training),
    ``results.json`` (``settings``, ``provenance``, every run with its wall time, the
    ``summary``), ``groups.png`` (unless ``config.chart`` is False), ``runs/*.json`` and
    ``checkpoints/*.pt`` to ``config.out_dir``.

    Returns:
        The content of ``results.json``.

    Raises:
        ValueError: Before any training: if the options do not fit together or the data
            (e.g. a prune ratio that channel damage cannot reach, more ``probe_shots``
            than a class has, a batch larger than a training subset), ``out_dir`` is a
            file or cannot be created, ``device`` is not available, or ``resume`` is set
            and the study in ``out_dir`` has other settings that change a run (the
            message lists them).
        FileNotFoundError: If the dataset is missing; the message says how to get it.
        ImportError: If the ``study`` extra (matplotlib, tqdm) is missing, before any
            training; the message says what to install. matplotlib is not needed with
            ``chart=False``, tqdm not with ``progress=False``.

    Examples:
        >>> results = run_study(StudyConfig(out_dir="runs/longtail", epochs=1))  # doctest: +SKIP
        >>> results["summary"]["sdclr"]["few"]["mean"]  # doctest: +SKIP
    """
    config = config.resolved()
    _check_study_extra(progress=config.progress, chart=config.chart)
    check_device(config.device)
    out = Path(config.out_dir)
    specs = schedule(config)
    if config.resume:
        check_resumable(config, out, [spec.name for spec in specs])
    make_folders(out)
    start = time.perf_counter()
    data = _load(config)
    data_info = describe_data(config, data)
    _preflight(config, data, specs)
    if not config.resume:
        remove_previous_runs(out, [spec.name for spec in specs])
    write_settings(config, out)
    if config.jobs == 1:
        with _threads(config.threads):
            runs = [run_one(config, spec, data) for spec in specs]
    else:
        context = multiprocessing.get_context("spawn")
        level = logging.getLogger().getEffectiveLevel()
        with ProcessPoolExecutor(config.jobs, context, _init_worker, (level,)) as pool:
            runs = list(pool.map(_run_in_worker, [config] * len(specs), specs))
    variants = list(dict.fromkeys(spec.variant for spec in specs))
    summary = summarize(runs, variants)
    settings = config.to_dict()
    provenance = study_provenance(config.device, time.perf_counter() - start)
    results = {"settings": settings, "provenance": provenance, "runs": runs, "summary": summary}
    results["data"] = data_info
    write_json(out / "results.json", results)
    if config.chart:
        plot(summary, variants, out / "groups.png", title=title(settings, data_info))
    return results


def run_one(config: StudyConfig, spec: RunSpec, data: StudyData) -> dict[str, Any]:
    """Trains and evaluates one run, writes ``runs/<name>.json``; returns its record.

    With ``config.resume``, a run already evaluated is read back instead.
    """
    out = Path(config.out_dir)
    result_path = out / "runs" / f"{spec.name}.json"
    if config.resume and result_path.exists():
        logger.info("%s: already evaluated, reading %s", spec.name, result_path)
        record: dict[str, Any] = json.loads(result_path.read_text())
        return record
    split, indices = _training_subset(config, spec, data)
    epoch_seconds: list[float] = []
    started = time.perf_counter()
    model = _model(config, data, spec).to(torch.device(config.device))
    losses = pretrain(
        model,
        data,
        torch.from_numpy(np.array(indices)),
        _train_settings(config, _variant(config, spec)),
        name=spec.name,
        checkpoint=out / "checkpoints" / f"{spec.name}.pt",
        resume=config.resume,
        seed=spec.seed,
        epoch_seconds=epoch_seconds,
    )
    trained = time.perf_counter()
    metrics = _evaluate(config, spec, data, model, split)
    done = time.perf_counter()
    record = {
        "name": spec.name,
        "variant": spec.variant,
        "order": spec.order,
        "seed": spec.seed,
        "class_counts": list(split.class_counts),
        "losses": losses,
        **metrics,
        "wall_time_s": {
            "pretrain": trained - started,
            "evaluation": done - trained,
            "epochs": epoch_seconds,
        },
    }
    write_json(result_path, record)
    logger.info("%s: %s", spec.name, one_line(record))
    return record


def _evaluate(
    config: StudyConfig, spec: RunSpec, data: StudyData, model: Any, split: LongTailSplit
) -> dict[str, Any]:
    """The run's metrics (:func:`~selfdamage.study.evaluation.evaluate`) under ``config``."""
    return evaluate(
        model,
        data,
        split.class_counts,
        torch.from_numpy(np.array(split.indices)),
        with_damage=_variant(config, spec).base != "balanced",
        probe_shots=probe_shots(config, data.train_labels),
        probe_draws=config.probe_draws,
        thresholds=group_thresholds(config),
    )


def _variant(config: StudyConfig, spec: RunSpec) -> Variant:
    return parse_variant(spec.variant, config.method)


def _train_settings(config: StudyConfig, variant: Variant | None = None) -> TrainSettings:
    """The pretraining options of the runs of ``variant`` under a resolved ``config``."""
    return TrainSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=_resolved(config.lr),
        weight_decay=_resolved(config.weight_decay),
        optimizer=_resolved(config.optimizer),
        max_steps=config.max_steps,
        checkpoint_every=config.checkpoint_every,
        amp=bool(config.amp),
        channels_last=bool(config.channels_last),
        progress=config.progress and config.jobs == 1,
        bcl=variant is not None and variant.bcl,
        gh=variant is not None and variant.gh,
    )


def _training_subset(
    config: StudyConfig, spec: RunSpec, data: StudyData
) -> tuple[LongTailSplit, np.ndarray]:
    """The long-tailed split of the run's class order, and the run's training indices.

    The balanced reference is as large as the long-tailed subset, or smaller where the rarest
    class has fewer images than that needs per class (:func:`_preflight` warns).
    """
    split = training_split(config, data.train_labels, spec.order)
    if _variant(config, spec).base == "balanced":
        per_class = min(len(split.indices) // data.num_classes, _rarest(data))
        return split, balanced_indices(data.train_labels, per_class, seed=spec.order)
    return split, split.indices


def _rarest(data: StudyData) -> int:
    return int(torch.bincount(data.train_labels).min())


def _model(config: StudyConfig, data: StudyData, spec: RunSpec) -> Any:
    return build_model(
        config.method,
        config.backbone,
        config.width,
        data.image_shape,
        seed=spec.seed,
        sdclr=_variant(config, spec).base == "sdclr",
        damage=config.damage,
        prune_ratio=_resolved(config.prune_ratio),
        temperature=study_temperature(config, _variant(config, spec)),
        head=config.head,
    )


def _preflight(config: StudyConfig, data: StudyData, specs: list[RunSpec]) -> None:
    """Checks the options against the data and builds one model per variant, so that
    options that do not fit fail before any training."""
    unique = {(spec.variant, spec.order): spec for spec in specs}.values()
    subsets = {}
    for spec in unique:
        split, indices = _training_subset(config, spec, data)
        subsets[spec.name] = len(indices)
        wanted = len(split.indices) // data.num_classes
        if _variant(config, spec).base == "balanced" and wanted > _rarest(data):
            warnings.warn(
                f"{spec.name}: a balanced subset as large as the long-tailed one needs "
                f"{wanted} images per class, the rarest class has {_rarest(data)}; the "
                f"balanced reference uses {_rarest(data)} per class (a smaller set).",
                stacklevel=2,
            )
    check_fits_data(config, data, subsets)
    for spec in {spec.variant: spec for spec in specs}.values():
        _model(config, data, spec)


def _load(config: StudyConfig) -> StudyData:
    if config.dataset in OWN_DATASETS:
        return load_own_data(config)
    return load_data(
        config.dataset,
        config.data_dir,
        config.download,
        three_channels=config.backbone == "resnet18",
    )


T = TypeVar("T")


def _resolved(value: T | None) -> T:
    if value is None:  # resolved() fills every option the method has
        raise ValueError("the configuration is not resolved; call config.resolved()")
    return value


def _check_study_extra(*, progress: bool, chart: bool) -> None:
    needed = (["matplotlib"] if chart else []) + (["tqdm"] if progress else [])
    missing = []
    for name in needed:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"the long-tail study needs {' and '.join(missing)} (for its chart and progress "
            'bars), which are not installed: pip install "selfdamage[study]"'
        )


class _threads:
    """Sets torch's CPU thread count for a block, then restores it."""

    def __init__(self, threads: int | None) -> None:
        self.threads, self.before = threads, torch.get_num_threads()

    def __enter__(self) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)


_WORKER_DATA: dict[tuple[str | None, ...], StudyData] = {}  # one dataset per process


def _init_worker(level: int) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _run_in_worker(config: StudyConfig, spec: RunSpec) -> dict[str, Any]:
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    key = (config.dataset, config.data_dir, config.train_list, config.backbone)
    if key not in _WORKER_DATA:
        _WORKER_DATA[key] = _load(config)
    return run_one(config, spec, _WORKER_DATA[key])
