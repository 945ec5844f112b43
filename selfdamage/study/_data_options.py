"""Checks of the study's own-data options (``dataset="folder"`` or ``"list"``).

:class:`~selfdamage.study.config.StudyConfig` calls them from ``__post_init__``: the
options that must go together (a folder needs ``data_dir``, list files need both lists),
those that only apply to your own images, and one class order for a natural long tail.
"""

from __future__ import annotations

from typing import Any

from selfdamage._checks import check_int, check_real
from selfdamage.study.data import OWN_DATASETS

__all__ = ["check_own_data", "check_thresholds", "own_data_types"]


def check_thresholds(name: str, value: Any) -> None:
    """Checks ``(many_above, few_below)`` group thresholds: two counts, in that order.

    Raises:
        ValueError: If ``value`` is not two counts ``>= 0`` with ``few_below <= many_above``.

    Examples:
        >>> check_thresholds("group_thresholds", (20, 100))
        Traceback (most recent call last):
        ...
        ValueError: group_thresholds must be (many_above, few_below) with few_below <= many_above, e.g. (100, 20), got group_thresholds=(20, 100).
    """  # noqa: E501
    if len(value) != 2:
        raise ValueError(f"{name} must be (many_above, few_below), got {name}={value!r}.")
    for i, count in enumerate(value):
        check_int(f"{name}[{i}]", count, 0)
    if value[1] > value[0]:
        raise ValueError(
            f"{name} must be (many_above, few_below) with few_below <= many_above, e.g. "
            f"(100, 20), got {name}={tuple(value)!r}."
        )


def own_data_types(config: Any) -> None:
    """Lists from the command line or JSON become tuples, paths strings (in place).

    Examples:
        >>> from selfdamage.study import StudyConfig
        >>> StudyConfig(group_thresholds=[50, 10]).group_thresholds
        (50, 10)
    """
    for name in ("group_thresholds", "mean", "std"):
        if getattr(config, name) is not None:
            object.__setattr__(config, name, tuple(getattr(config, name)))
    for name in ("train_list", "test_list", "image_root"):
        if getattr(config, name) is not None:
            object.__setattr__(config, name, str(getattr(config, name)))


def check_own_data(config: Any) -> None:
    """Checks the options of ``dataset="folder"`` and ``"list"``: those that must go
    together, and ``mean`` (finite, in ``[0, 1]``) and ``std`` (finite, ``> 0``).

    Raises:
        TypeError: If a value of ``mean`` or ``std`` is not a number.
        ValueError: If an option is missing, does not apply, does not fit another, or is
            out of range.

    Examples:
        >>> from selfdamage.study import StudyConfig
        >>> StudyConfig(dataset="folder")
        Traceback (most recent call last):
        ...
        ValueError: dataset='folder' needs data_dir (--data-dir DIR), the folder holding DIR/train/CLASS/* and DIR/test/CLASS/*.
    """  # noqa: E501
    if config.dataset == "folder" and config.data_dir is None:
        raise ValueError(
            "dataset='folder' needs data_dir (--data-dir DIR), the folder holding "
            "DIR/train/CLASS/* and DIR/test/CLASS/*."
        )
    if config.dataset == "list" and (config.train_list is None or config.test_list is None):
        raise ValueError(
            "dataset='list' needs train_list and test_list (--train-list FILE --test-list "
            f"FILE), got train_list={config.train_list!r}, test_list={config.test_list!r}."
        )
    if config.dataset not in OWN_DATASETS:
        for name in ("train_list", "test_list", "image_root", "image_size", "mean", "std"):
            if getattr(config, name) is not None:
                raise ValueError(
                    f"{name} applies to dataset='folder' or 'list', got dataset="
                    f"{config.dataset!r} and {name}={getattr(config, name)!r}; leave it unset."
                )
    natural = config.profile == "natural" or (
        config.profile == "auto" and config.dataset in OWN_DATASETS
    )
    if natural and config.class_orders > 1:
        raise ValueError(
            f"class_orders={config.class_orders} needs a subsampled profile: with "
            "profile='natural' the classes keep the sizes they have, so there is one class "
            "order; set class_orders=1, or profile='exponential' (or step, pareto)."
        )
    if (config.mean is None) != (config.std is None) or (
        config.mean is not None and config.std is not None and len(config.mean) != len(config.std)
    ):
        raise ValueError(
            "mean and std go together, one value per channel, got "
            f"mean={config.mean!r}, std={config.std!r}."
        )
    for name, low, high in (("mean", 0.0, 1.0), ("std", 0.0, None)):
        for channel, value in enumerate(getattr(config, name) or ()):
            check_real(
                f"{name}[{channel}]", value, low, high, low_open=name == "std",
                fix="mean and std are per-channel statistics of pixels scaled to [0, 1]; "
                "leave both unset to compute them from the training images.",
            )  # fmt: skip
