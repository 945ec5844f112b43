"""The argument checks: one message form, ``NAME must be ..., got NAME=VALUE.`` plus a fix."""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn

from selfdamage._checks import check_bool, check_choice, check_int, check_module, check_real


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
