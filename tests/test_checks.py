"""The argument checks: one message form, ``NAME must be ..., got NAME=VALUE.`` plus a fix."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from selfdamage import ChannelDamage, SelfDamagingWrapper, WeightDamage
from selfdamage._checks import check_bool, check_choice, check_int, check_module, check_real
from selfdamage.adapters import SimCLRAdapter
from selfdamage.cli import main
from selfdamage.masks import global_magnitude_masks
from selfdamage.study.config import StudyConfig


class TestChecks:
    @pytest.mark.parametrize(
        ("call", "error", "message"),
        [
            (lambda: check_real("r", "x"), TypeError, "r must be a float, got r='x'."),
            (lambda: check_real("r", True), TypeError, "r must be a float, got r=True."),
            (lambda: check_real("r", 2, 0, 1), ValueError, "r must be in [0, 1], got r=2.0."),
            (
                lambda: check_real("r", 0.0, 0.0, 1.0, low_open=True),
                ValueError,
                "r must be in (0.0, 1.0], got r=0.0.",
            ),
            (
                lambda: check_real("r", 0.7, 0.0, 0.5, high_name="p"),
                ValueError,
                "r must be in [0.0, p=0.5], got r=0.7.",
            ),
            (lambda: check_real("r", -1, 0), ValueError, "r must be >= 0, got r=-1.0."),
            (
                lambda: check_real("m", 2.0, 0, 1, what="a momentum", fix="Use 0.99."),
                ValueError,
                "m must be a momentum, got m=2.0. Use 0.99.",
            ),
            (
                lambda: check_real("r", float("nan"), 0.0, 1.0, high_open=True),
                ValueError,
                "r must be a finite number in [0.0, 1.0), got r=nan.",
            ),
            (
                lambda: check_real("t", float("inf"), 0.0, low_open=True),
                ValueError,
                "t must be a finite number > 0.0, got t=inf.",
            ),
            (
                lambda: check_real("x", -math.inf),
                ValueError,
                "x must be a finite number, got x=-inf.",
            ),
            (
                lambda: check_real("m", math.nan, 0, 1, what="a momentum", fix="Use 0.99."),
                ValueError,
                "m must be a finite number (a momentum), got m=nan. Use 0.99.",
            ),
            (lambda: check_int("n", 1.0), TypeError, "n must be an int, got n=1.0."),
            (lambda: check_int("n", 5, 1, 3), ValueError, "n must be in [1, 3], got n=5."),
            (lambda: check_bool("b", "yes"), TypeError, "b must be a bool, got b='yes'."),
            (
                lambda: check_choice("c", "z", ("x", "y")),
                ValueError,
                "c must be one of 'x', 'y', got c='z'.",
            ),
            (lambda: check_module("m", 3), TypeError, "m must be a torch.nn.Module, got int."),
        ],
    )
    def test_message_form(self, call: Any, error: type[Exception], message: str) -> None:
        with pytest.raises(error) as info:
            call()
        assert str(info.value) == message

    def test_values_pass_through(self) -> None:
        assert check_real("r", 1, 0, 1) == 1.0 and isinstance(check_real("r", 1), float)
        assert check_int("n", 3, 1) == 3 and check_bool("b", False) is False
        assert check_choice("c", "x", ("x",)) == "x"
        layer = nn.Linear(1, 1)
        assert check_module("m", layer) is layer


NON_FINITE = [math.nan, math.inf, -math.inf]


def _wrap(**kwargs: Any) -> Any:
    return SelfDamagingWrapper(nn.Sequential(nn.Conv2d(3, 4, 3)), **kwargs)


class TestNonFiniteArguments:
    """NaN passes every comparison: each numeric argument rejects it (and infinity) by name."""

    @pytest.mark.parametrize("value", NON_FINITE)
    @pytest.mark.parametrize(
        ("name", "build"),
        [
            ("prune_ratio", lambda v: _wrap(prune_ratio=v)),
            ("prune_ratio", lambda v: WeightDamage(v)),
            ("random_ratio", lambda v: _wrap(prune_ratio=0.5, random_ratio=v)),
            ("random_ratio", lambda v: WeightDamage(0.5, random_ratio=v)),
            ("prune_ratio", lambda v: ChannelDamage(v, example_inputs=torch.zeros(2, 3, 8, 8))),
            (
                "max_channel_ratio",
                lambda v: ChannelDamage(
                    0.5, example_inputs=torch.zeros(2, 3, 8, 8), max_channel_ratio=v
                ),
            ),
            ("prune_ratio", lambda v: global_magnitude_masks([torch.ones(4)], v)),
            ("temperature", lambda v: SimCLRAdapter(_backbone(), 4, temperature=v)),
            ("temperature", lambda v: StudyConfig(temperature=v)),
            ("prune_ratio", lambda v: StudyConfig(prune_ratio=v)),
        ],
    )
    def test_rejected_by_name(self, name: str, build: Any, value: float) -> None:
        with pytest.raises(ValueError, match=rf"{name} must be a finite number.*got {name}="):
            build(value)

    def test_command_line_rejects_nan_before_training(
        self, tmp_path: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "out"
        with pytest.raises(SystemExit) as info:
            main(["longtail", "--prune-ratio", "nan", "--out", str(out)])
        assert info.value.code == 2
        assert "--prune-ratio must be a finite number in [0.0, 1.0), got --prune-ratio=nan" in (
            capsys.readouterr().err
        )
        assert not out.exists()


def _backbone() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
