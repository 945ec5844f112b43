"""The study options' dataclass fields and the checks they run.

:func:`option` makes a :class:`~selfdamage.study.config.StudyConfig` field whose metadata
holds the command-line help, group and flag and the value check (:func:`data_path` one for
a file or folder of the data); the ``check_*`` functions
and the :func:`choice`, :func:`number` and :func:`optional` factories are those checks, in
:mod:`selfdamage._checks`' message form. :func:`check_fields` runs them, naming each option
by its keyword or, for values from the command line, by its flag (:func:`flag`).
:func:`add_field_arguments` makes the command line of the fields.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import Field, field, fields
from typing import Any

import torch

from selfdamage._checks import check_choice, check_int, check_real

Check = Callable[[str, Any], object]  # raises in selfdamage._checks' message form if bad


def choice(allowed: Sequence[str]) -> Check:
    return lambda name, value: check_choice(name, value, allowed)


def check_positive(name: str, value: Any) -> None:
    check_int(name, value, 1, what="a positive integer")


def check_non_negative(name: str, value: Any) -> None:
    check_int(name, value, 0)


def check_size_or_all(name: str, value: Any) -> None:
    check_int(name, value, 0, what="0 (all samples) or a positive integer")


def check_batch_size(name: str, value: Any) -> None:
    check_int(
        name,
        value,
        2,
        what=">= 2",
        fix="Every method contrasts or normalizes over the batch (BatchNorm in the heads), "
        "which needs at least 2 samples; the paper's is 512.",
    )


def optional(check: Check) -> Check:
    return lambda name, value: None if value is None else check(name, value)


def number(low: float, high: float | None = None, *, low_open: bool = False) -> Check:
    return lambda name, value: check_real(
        name, value, low, high, low_open=low_open, high_open=high is not None
    )


def check_seeds(name: str, value: Any) -> None:
    if not value:
        raise ValueError(f"{name} must name at least one seed, got {name}=[].")
    for i, seed in enumerate(value):
        check_int(f"{name}[{i}]", seed, 0)
    twice = sorted({seed for seed in value if list(value).count(seed) > 1})
    if twice:
        raise ValueError(
            f"{name} must be distinct, got {name}={list(value)}: seed(s) {twice} would train "
            "the same runs again and count them twice. List each seed once."
        )


def check_device_name(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {name}={value!r}.")
    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"{name} must be a torch device such as 'cpu', 'cuda' or 'cuda:1', "
            f"got {name}={value!r}."
        ) from None


def option(
    default: Any,
    help: str,
    *,
    group: str,
    check: Check | None = None,
    choices: Sequence[str] | None = None,
    flag: str | None = None,
    cli: dict[str, Any] | None = None,
) -> Any:
    """A dataclass field whose metadata holds what the command line and the checks need."""
    if choices is not None:
        check = choice(choices)
    metadata: dict[str, Any] = {"help": help, "group": group, "check": check}
    metadata |= {"choices": choices, "flag": flag, "cli": cli or {}}
    return field(default=default, metadata=metadata)


def flag(f: Field[Any]) -> str:
    """The command-line flag of the field ``f``: its own, else ``--`` and its dashed name."""
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def check_fields(config: type, values: Mapping[str, Any], *, by_flag: bool = False) -> None:
    """Runs the check of every field of the dataclass ``config`` on its value in ``values``.

    Args:
        config: The dataclass.
        values: A value for every field, by field name.
        by_flag: Name each option by its command-line flag (:func:`flag`) in the messages:
            for values from the command line. Else by its field name, the keyword.

    Raises:
        TypeError: If a value has the wrong type.
        ValueError: If a value is not allowed; the message names the option, the value
            and what is allowed.
    """
    for f in fields(config):
        if f.metadata["check"] is not None:
            f.metadata["check"](flag(f) if by_flag else f.name, values[f.name])


def data_path(help: str) -> Any:
    """An optional file or folder of the data: None unless given, a str on the command line."""
    return option(None, help, group="data", cli={"type": str})


def add_field_arguments(parser: argparse.ArgumentParser, config: type, methods: Any) -> None:
    """Adds one command-line option per field of the dataclass ``config``, in groups.

    ``methods`` is the method table: a field with a per-method default lists them in its help.
    """
    groups: dict[str, Any] = {}
    for f in fields(config):
        meta, cli = f.metadata, f.metadata["cli"]
        group = groups.get(meta["group"]) or parser.add_argument_group(meta["group"])
        groups[meta["group"]] = group
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
        if f.default is False:
            kwargs |= {"action": "store_true"}
        elif cli.get("invert"):
            kwargs |= {"action": "store_false"}
        elif f.name in ("amp", "channels_last"):
            kwargs |= {"action": argparse.BooleanOptionalAction, "default": None}
        else:
            kwargs |= {"type": cli.get("type", type(f.default)), "metavar": f.name.upper()}
            kwargs |= {key: cli[key] for key in ("nargs", "choices", "metavar") if key in cli}
            if meta["choices"] is not None:
                kwargs["choices"] = meta["choices"]
            if "choices" in kwargs:
                kwargs["metavar"] = None
        if "default" not in kwargs:
            kwargs["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
        if f.name in methods["simclr"].defaults:
            table = ", ".join(
                f"{method} {'-' if spec.defaults[f.name] is None else spec.defaults[f.name]}"
                for method, spec in methods.items()
            )
            kwargs["help"] += f" (default: the method's: {table})"
        elif kwargs["default"] is not None and not isinstance(kwargs["default"], bool):
            kwargs["help"] += " (default: %(default)s)"
        group.add_argument(flag(f), **kwargs)
