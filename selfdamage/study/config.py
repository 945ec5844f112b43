"""The study's configuration: every option's name, default, help and check, in one place.

:class:`StudyConfig` is the single source of truth. The command line
(``selfdamage longtail ...``) is generated from its fields (:func:`add_arguments`,
:func:`from_arguments`), and ``results.json`` stores it (:meth:`StudyConfig.to_dict`).
Options whose right value depends on the method (``lr``, ``temperature``,
``optimizer``, ``weight_decay``) default to ``None``: "the method's default", looked up in
:data:`~selfdamage.study.models.METHOD_TABLE` by :meth:`StudyConfig.resolved`; so does
``prune_ratio``, whose default depends on the damage (``DAMAGE_PRUNE_RATIOS``).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from selfdamage.study._data_options import check_own_data, check_thresholds, own_data_types
from selfdamage.study._option_fields import (
    add_field_arguments,
    check_batch_size,
    check_device_name,
    check_fields,
    check_non_negative,
    check_positive,
    check_seeds,
    check_size_or_all,
    choice,
    data_path,
    number,
    option,
    optional,
)
from selfdamage.study._variants import check_variants
from selfdamage.study.data import DATASETS
from selfdamage.study.models import BACKBONES, HEADS, METHOD_TABLE, METHODS, reference_head_error
from selfdamage.study.training import OPTIMIZERS

__all__ = ["StudyConfig", "add_arguments", "from_arguments"]

DAMAGE_PRUNE_RATIOS = {"weight": 0.9, "channel": 0.5}
"""The default ``prune_ratio`` of each damage: the paper's 0.9 for weight damage; 0.5 for
channel damage, which cannot remove 90 % of a ResNet's channels (every layer keeps one)."""
DAMAGES = tuple(DAMAGE_PRUNE_RATIOS)
PROFILES = ("auto", "natural", "exponential", "step", "pareto")
GROUP_RULES = ("thirds", "counts")
BOOSTS = ("bcl",)
SCHEDULES = ("cosine",)
ADDED_OPTIONS = ("variants", "boost", "temperature_schedule", "gh")
"""Options that :meth:`StudyConfig.to_dict` leaves out at their default: the settings of a
study without them are recorded as before they existed (and such folders resume)."""


@dataclass(frozen=True)
class StudyConfig:
    """Every option of the long-tail study, with its default, help text and check.

    Options set to ``None`` take a default that depends on other options:
    ``lr``/``temperature``/``optimizer``/``weight_decay`` the method's (see :meth:`resolved`),
    ``prune_ratio`` the damage's (``DAMAGE_PRUNE_RATIOS``), ``amp``/``channels_last``
    on for CUDA only, ``threads`` torch's thread count.

    Raises:
        TypeError: If an option has a value of the wrong type.
        ValueError: If an option has a value it does not allow; the message names the
            option, the value, and what is allowed.

    Examples:
        >>> config = StudyConfig(method="byol", epochs=2)
        >>> config.resolved().lr, config.resolved().temperature
        (0.5, None)
        >>> StudyConfig(epochs=0)
        Traceback (most recent call last):
        ...
        ValueError: epochs must be a positive integer, got epochs=0.
    """

    # data
    dataset: str = option("fashion-mnist", "the dataset", group="data", choices=DATASETS)
    data_dir: str | None = data_path(
        "dataset folder (default for Fashion-MNIST: /usr/share/datasets/fashion-mnist); for "
        "--dataset folder: DIR with DIR/train/CLASS/* and DIR/test/CLASS/* (or val/)"
    )
    train_list: str | None = data_path(
        "--dataset list: the training list file, one 'relative/path label' line per image"
    )
    test_list: str | None = data_path("--dataset list: the test list file")
    image_root: str | None = data_path(
        "--dataset list: the folder the listed paths are relative to (default: the "
        "training list's folder)"
    )
    profile: str = option(
        "auto",
        "class sizes: 'natural' uses the training split as it is; exponential/step/pareto "
        "subsample it to --imbalance-ratio and --n-max (default auto: natural for folder "
        "and list, exponential for the built-in datasets)",
        group="data",
        choices=PROFILES,
    )
    groups: str = option(
        "thirds",
        "Many/Medium/Few: thirds of the classes by training count, or counts: by "
        "--group-thresholds (ImageNet-LT's rule)",
        group="data",
        choices=GROUP_RULES,
    )
    group_thresholds: tuple[int, int] = option(
        (100, 20),
        "--groups counts: Many above the first, Few below the second training count",
        group="data",
        check=check_thresholds,
        cli={"type": int, "nargs": 2, "metavar": ("MANY_ABOVE", "FEW_BELOW")},
    )
    image_size: int | None = option(
        None,
        "folder/list: training resolution in pixels (default: the images' median shorter "
        "side, at most 64)",
        group="data",
        check=optional(check_positive),
        cli={"type": int},
    )
    image_mode: str = option(
        "auto",
        "folder/list: convert every image to L (grayscale) or RGB (default: the images' "
        "own; mixed modes are an error)",
        group="data",
        choices=("auto", "L", "RGB"),
    )
    mean: tuple[float, ...] | None = option(
        None,
        "folder/list: per-channel normalization mean in [0, 1] (default: from 1000 "
        "training images)",
        group="data",
        cli={"type": float, "nargs": "+"},
    )
    std: tuple[float, ...] | None = option(
        None,
        "folder/list: per-channel normalization std (default: from 1000 training images)",
        group="data",
        cli={"type": float, "nargs": "+"},
    )
    workers: int = option(
        2, "folder/list: processes decoding images", group="data", check=check_non_negative
    )
    cache_mb: int = option(
        2048,
        "folder/list: decoded images are kept in memory up to this many MiB; a larger set "
        "streams from disk",
        group="data",
        check=check_non_negative,
    )
    download: bool = option(False, "let torchvision fetch CIFAR", group="data")
    imbalance_ratio: float = option(
        100.0, "largest over smallest class size", group="data", check=number(1.0)
    )
    n_max: int | None = option(
        1500,
        "size of the largest class; 0: all samples",
        group="data",
        check=optional(check_size_or_all),
        cli={"type": int},
    )
    class_orders: int = option(
        1,
        "class orders (head/tail); order k is drawn with seed k",
        group="data",
        check=check_positive,
    )
    # model and training
    method: str = option("simclr", "the base method", group="model and training", choices=METHODS)
    damage: str = option("weight", "the twin's damage", group="model and training", choices=DAMAGES)
    backbone: str = option(
        "resnet18-cifar", "the backbone", group="model and training", choices=BACKBONES
    )
    width: int = option(8, "resnet18-cifar width (paper: 64)", group="model and training",
                         check=check_positive)  # fmt: skip
    head: str = option(
        "lightly",
        "projection head of every variant: the method's own from lightly, or the SDCLR "
        "code's 3-layer head (methods "
        + ", ".join(name for name, spec in METHOD_TABLE.items() if spec.reference_head)
        + ")",
        group="model and training",
        choices=HEADS,
    )
    prune_ratio: float | None = option(
        None,
        "the twin's prune ratio (default: the damage's: "
        + ", ".join(f"{damage} {ratio}" for damage, ratio in DAMAGE_PRUNE_RATIOS.items())
        + ")",
        group="model and training",
        check=optional(number(0.0, 1.0)),
        cli={"type": float},
    )
    temperature: float | None = option(
        None,
        "loss temperature",
        group="model and training",
        check=optional(number(0.0, low_open=True)),
        cli={"type": float},
    )
    epochs: int = option(30, "pretraining epochs per run", group="model and training",
                          check=check_positive)  # fmt: skip
    batch_size: int = option(
        256, "pretraining batch size", group="model and training", check=check_batch_size
    )
    lr: float | None = option(
        None,
        "learning rate at batch size 256",
        group="model and training",
        check=optional(number(0.0)),
        cli={"type": float},
    )
    optimizer: str | None = option(
        None,
        "the optimizer (lr scaled from batch size 256)",
        group="model and training",
        check=optional(choice(OPTIMIZERS)),
        cli={"type": str, "choices": OPTIMIZERS},
    )
    weight_decay: float | None = option(
        None,
        "weight decay",
        group="model and training",
        check=optional(number(0.0)),
        cli={"type": float},
    )
    seeds: tuple[int, ...] = option(
        (0,), "training seeds", group="model and training", check=check_seeds,
        cli={"type": int, "nargs": "+"},
    )  # fmt: skip
    balanced_reference: bool = option(
        False,
        "also train the base method on a balanced subset of the same size",
        group="model and training",
    )
    # long-tail variants (selfdamage.study._variants)
    variants: tuple[str, ...] | None = option(
        None,
        "variants to train and compare with the first, e.g. simclr sdclr sdclr+bcl: a base "
        "(baseline or the method's name, sdclr, balanced) with plug-ins +bcl, +ts, +gh "
        "(default: baseline sdclr, and balanced with --balanced-reference)",
        group="long-tail variants",
        cli={"type": str, "nargs": "+", "metavar": "VARIANT"},
    )
    boost: str | None = option(
        None, "add BCL's boosted augmentation (+bcl) to every variant but balanced",
        group="long-tail variants", check=optional(choice(BOOSTS)),
        cli={"type": str, "choices": BOOSTS},
    )  # fmt: skip
    temperature_schedule: str | None = option(
        None, "add the cosine temperature schedule (+ts) to every variant but balanced",
        group="long-tail variants", check=optional(choice(SCHEDULES)),
        cli={"type": str, "choices": SCHEDULES},
    )  # fmt: skip
    gh: bool = option(
        False, "add geometric harmonization (+gh) to every variant but balanced",
        group="long-tail variants",
    )  # fmt: skip
    device: str = option(
        "cpu",
        "where to train, e.g. cpu or cuda",
        group="model and training",
        check=check_device_name,
    )
    amp: bool | None = option(
        None, "bf16 autocast in training (default: on for CUDA, off on CPU)", group="performance"
    )
    channels_last: bool | None = option(
        None, "channels-last memory format (default: on for CUDA, off on CPU)", group="performance"
    )
    jobs: int = option(1, "runs trained at once, in parallel processes", group="performance",
                        check=check_positive)  # fmt: skip
    threads: int | None = option(
        None,
        "CPU threads of every run, whatever --jobs is; the numbers depend on it (default: "
        "torch's thread count here)",
        group="performance",
        check=optional(check_positive),
        cli={"type": int},
    )
    max_steps: int | None = option(
        None,
        "steps per epoch at most (smoke tests)",
        group="model and training",
        check=optional(check_positive),
        cli={"type": int},
    )
    # evaluation
    probe_shots: int = option(
        100, "labels per class; 0: all", group="evaluation", check=check_non_negative
    )
    probe_draws: int = option(
        5, "labeled subsets drawn; metrics are averaged", group="evaluation", check=check_positive
    )
    # output
    out_dir: str = option("runs/longtail", "folder for results", group="output", flag="--out")
    resume: bool = option(
        False,
        "continue the study in --out; only --jobs, --workers, --cache-mb, "
        "--checkpoint-every, --no-progress, --no-chart and --download may differ from its "
        "settings",
        group="output",
    )
    checkpoint_every: int = option(
        10, "checkpoint every K epochs, and at the last", group="output", check=check_positive
    )
    progress: bool = option(
        True, "no progress bars", group="output", flag="--no-progress", cli={"invert": True}
    )
    chart: bool = option(
        True,
        "no chart (groups.png), so matplotlib is not needed",
        group="output",
        flag="--no-chart",
        cli={"invert": True},
    )

    def __post_init__(self) -> None:
        own_data_types(self)
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "out_dir", str(self.out_dir))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", str(self.data_dir))
        check_fields(type(self), vars(self))
        if self.n_max == 0:  # all samples, as None
            object.__setattr__(self, "n_max", None)
        defaults = METHOD_TABLE[self.method].defaults
        for name, default in defaults.items():
            if default is None and getattr(self, name) is not None:
                raise ValueError(
                    f"{name} does not apply to method={self.method!r}, got "
                    f"{name}={getattr(self, name)!r}; leave it unset."
                )
        if self.head == "reference" and not METHOD_TABLE[self.method].reference_head:
            raise ValueError(reference_head_error(self.method))
        check_own_data(self)
        check_variants(self)

    def resolved(self) -> StudyConfig:
        """The same configuration with every ``None`` that has a default filled in.

        Examples:
            >>> StudyConfig().resolved().temperature
            0.2
            >>> StudyConfig().resolved().amp
            False
        """
        values: dict[str, Any] = {}
        for name, default in METHOD_TABLE[self.method].defaults.items():
            if getattr(self, name) is None:
                values[name] = default
        if self.prune_ratio is None:
            values["prune_ratio"] = DAMAGE_PRUNE_RATIOS[self.damage]
        cuda = torch.device(self.device).type == "cuda"
        for name in ("amp", "channels_last"):
            if getattr(self, name) is None:
                values[name] = cuda
        if self.threads is None:
            values["threads"] = torch.get_num_threads()
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON types (``seeds`` and other tuples lists).

        The options of ``ADDED_OPTIONS`` are left out where they have their default.

        Examples:
            >>> StudyConfig().to_dict()["seeds"]
            [0]
        """
        out = dataclasses.asdict(self)
        for name in ADDED_OPTIONS:  # a default study's record stays the one 1.0 wrote
            if out[name] == _DEFAULTS[name]:
                del out[name]
        out["seeds"] = list(self.seeds)
        if out.get("variants") is not None:
            out["variants"] = list(out["variants"])
        for name in ("group_thresholds", "mean", "std"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one command-line option per :class:`StudyConfig` field, in groups.

    Examples:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> from_arguments(parser.parse_args(["--epochs", "3", "--n-max", "0"])).n_max is None
        True
    """
    add_field_arguments(parser, StudyConfig, METHOD_TABLE)


def from_arguments(args: argparse.Namespace) -> StudyConfig:
    """The :class:`StudyConfig` of parsed arguments (``--n-max 0`` becomes ``None``).

    Raises:
        ValueError: If an option has a value it does not allow; the message names the
            option by its flag (``--epochs must be a positive integer, got --epochs=0.``).

    Examples:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> from_arguments(parser.parse_args(["--epochs", "0"]))
        Traceback (most recent call last):
        ...
        ValueError: --epochs must be a positive integer, got --epochs=0.
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(StudyConfig)}
    check_fields(StudyConfig, values, by_flag=True)  # before StudyConfig names the keywords
    return StudyConfig(**values)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StudyConfig)}
