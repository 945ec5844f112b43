"""The study's folder (``out_dir``): its settings record, resuming in it, replacing it.

A study writes its resolved settings to ``settings.json`` before any training. A resumed
study reads its finished runs and checkpoints back only if every setting that changes a
run (all but :data:`NOT_RUN_SETTINGS`) is the one recorded there; a new study first removes
the run files it would overwrite. So the runs of two settings are never mixed, even when
a study stops early.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from selfdamage._compat.study_files import FALLBACK_SETTINGS_RECORDS
from selfdamage.study._files import remove_partial_writes, write_json
from selfdamage.study.config import ADDED_OPTIONS, StudyConfig

__all__: list[str] = []  # the study's internals: no public name

NOT_RUN_SETTINGS = (
    "jobs",
    "workers",
    "cache_mb",
    "checkpoint_every",
    "progress",
    "chart",
    "out_dir",
    "resume",
    "download",
)
"""The options that do not change what a run computes, so a resume may change them: how many
runs train at once, how many processes decode your images and whether they are kept in memory
or streamed (the same images in the same order either way), how often a checkpoint is written
(resuming from any checkpoint continues exactly), progress bars, the chart, where the study
is, resuming itself, and whether torchvision may fetch missing CIFAR files. ``threads`` is
not one of them: the number of CPU threads changes the order of float sums, and a few steps
later the numbers (by points of accuracy on a small study)."""


def run_differences(config: StudyConfig, stored: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The options that change a run and differ: ``{name: (stored value, config's value)}``.

    Args:
        config: A resolved configuration.
        stored: Another resolved configuration's :meth:`~StudyConfig.to_dict` (a
            ``settings.json``). An option missing from it counts as its default (for
            ``threads``, torch's thread count here, which 0.1 used), or as equal if its
            default is resolved from other options (not those of
            :data:`~selfdamage.study.config.ADDED_OPTIONS`, left out at their default); options of
            :data:`NOT_RUN_SETTINGS` are not compared.

    Examples:
        >>> old = StudyConfig(prune_ratio=0.9, jobs=1).resolved().to_dict()
        >>> run_differences(StudyConfig(prune_ratio=0.5, jobs=2).resolved(), old)
        {'prune_ratio': (0.9, 0.5)}
    """
    own = config.to_dict()
    differences = {}
    for f in dataclasses.fields(config):
        if f.name in NOT_RUN_SETTINGS:
            continue
        now = own.get(f.name, f.default)  # ADDED_OPTIONS are left out at their default
        if f.name in stored:
            before = stored[f.name]
        elif f.default is not None or f.name in ADDED_OPTIONS:
            before = f.default
        elif f.name == "threads":  # resolved from this machine, not from other options
            before = dataclasses.replace(config, threads=None).resolved().threads
        else:
            before = now
        if before != now:
            differences[f.name] = (before, now)
    return differences


def make_folders(out: Path) -> None:
    """Creates ``out``, ``out/runs`` and ``out/checkpoints``; clears unfinished writes in them.

    An unfinished write is the temporary file of a study stopped while writing a file
    (``_files``); the file itself is intact.

    Raises:
        ValueError: If ``out`` is a file or cannot be created; the message names
            ``out_dir``.
    """
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints").mkdir(exist_ok=True)
        for folder in (out, out / "runs", out / "checkpoints"):
            remove_partial_writes(folder)
    except OSError as error:
        if out.exists() and not out.is_dir():
            raise ValueError(
                f"out_dir must be a folder, got out_dir={str(out)!r}, which is a file. "
                "Pass a folder for the results (--out), new or of an earlier study."
            ) from None
        raise ValueError(
            f"out_dir must be a folder that can be created, got out_dir={str(out)!r}: "
            f"{error.strerror or error} ({error.filename}). Pass another folder (--out)."
        ) from None


def check_resumable(config: StudyConfig, out: Path, names: Sequence[str]) -> None:
    """Raises unless the study in ``out`` was started with every run setting of ``config``.

    The settings are read from ``settings.json``, else from the records of
    :data:`~selfdamage._compat.study_files.FALLBACK_SETTINGS_RECORDS`. A folder without a
    record and without files of the runs ``names`` is a new study.

    Raises:
        ValueError: If a setting that changes a run differs (the message lists each, the
            recorded and the new value), the record cannot be read, or runs are there
            without a record.
    """
    stored: dict[str, Any] | None = None
    for record, key in (("settings.json", None), *FALLBACK_SETTINGS_RECORDS):
        path = out / record
        if path.is_file():
            try:
                content = json.loads(path.read_text())
                stored = dict(content if key is None else content[key])
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise ValueError(
                    f"resume=True, but the settings of the study in {str(out)!r} cannot be "
                    f"read from {path} ({type(error).__name__}: {error}). Start it afresh "
                    "without --resume, or use another out_dir (--out)."
                ) from None
            break
    if stored is None:
        files = _run_files(out, names)
        if files:
            raise ValueError(
                f"resume=True, but {str(out)!r} holds runs ({files[0]}, ...) without a "
                "record of their settings (settings.json or results.json), so they cannot "
                "be checked against these settings. Start the study afresh without "
                "--resume, or in another out_dir (--out)."
            )
        return
    differences = run_differences(config, stored)
    if differences:
        listed = "; ".join(
            f"{name}: {before!r} there, {now!r} now" for name, (before, now) in differences.items()
        )
        raise ValueError(
            f"resume=True, but the study in {str(out)!r} was started with other settings "
            f"that change its runs: {listed}. Resuming would mix its runs with runs of "
            f"these settings. Resume with the settings in its {record}, or start these "
            "settings in another out_dir (--out), or afresh without --resume (which "
            "replaces its runs)."
        )


def remove_previous_runs(out: Path, names: Sequence[str]) -> None:
    """Removes what a new study in ``out`` replaces: the files of runs ``names``, the summary.

    The new study would overwrite them run by run; removing them first means that if it
    stops early, no run of the previous settings is left to be resumed as one of these.
    """
    for path in [*_run_files(out, names), out / "results.json", out / "groups.png"]:
        path.unlink(missing_ok=True)


def write_settings(config: StudyConfig, out: Path) -> None:
    """Writes the resolved ``config`` to ``out/settings.json``."""
    write_json(out / "settings.json", config.to_dict())


def _run_files(out: Path, names: Sequence[str]) -> list[Path]:
    """The files of the runs ``names`` that exist in ``out``."""
    paths = [out / "runs" / f"{name}.json" for name in names]
    paths += [out / "checkpoints" / f"{name}.pt" for name in names]
    return [path for path in paths if path.exists()]
