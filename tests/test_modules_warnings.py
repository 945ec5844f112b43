"""The small shared helpers: a module's device, a mode for a block, warnings at the caller."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import selfdamage._warnings
from selfdamage._modules import device_of, forward_pre_hooks, in_mode
from selfdamage._warnings import warns_at_caller


def test_device_of_reads_a_buffer_when_there_is_no_parameter() -> None:
    module = nn.Module()
    module.register_buffer("b", torch.zeros(1, dtype=torch.float64, device="meta"))
    assert device_of(module) == torch.device("meta")


def test_in_mode_restores_each_submodules_own_mode_even_after_an_error() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.BatchNorm1d(2))
    model[1].eval()
    before = [m.training for m in model.modules()]
    assert before == [True, True, False, True]
    with pytest.raises(RuntimeError), in_mode(model, False):
        assert not any(m.training for m in model.modules())
        raise RuntimeError
    assert [m.training for m in model.modules()] == before


def test_forward_pre_hooks_lists_only_the_modules_own_hooks() -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    model[0].register_forward_pre_hook(lambda module, args: None)
    assert forward_pre_hooks(model) == []
    assert len(forward_pre_hooks(model[0])) == 1


@warns_at_caller
def _inner() -> int:
    warnings.warn("from inside", UserWarning, stacklevel=1)
    return 1


@warns_at_caller
def _outer() -> int:
    return _inner() + 1


@pytest.fixture
def this_file_in_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts this directory as the package, so _inner's warning is one of selfdamage's."""
    here = os.path.normcase(os.path.realpath(os.path.dirname(__file__)))
    monkeypatch.setattr(selfdamage._warnings, "_PACKAGE_DIR", here)


@pytest.mark.usefixtures("this_file_in_the_package")
def test_warnings_point_at_the_outermost_callers_line() -> None:
    # _inner re-raises at _outer's line, a line of the package: _outer re-raises it here.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _current_line() + 1
        result = _outer()
    assert result == 2
    assert [(w.filename, w.lineno, str(w.message)) for w in caught] == [
        (__file__, line, "from inside")
    ]


@pytest.mark.usefixtures("this_file_in_the_package")
def test_a_warning_filtered_as_error_still_raises_at_the_caller() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="from inside"):
            _outer()


def test_held_warnings_are_raised_even_when_the_entry_point_raises() -> None:
    @warns_at_caller
    def failing() -> None:
        warnings.warn("before the error", UserWarning, stacklevel=1)
        raise ValueError("boom")

    with pytest.warns(UserWarning, match="before the error"), pytest.raises(ValueError):
        failing()


@warns_at_caller
def _calls(callback: Callable[[], None], times: int) -> None:
    for _ in range(times):
        callback()


def _users_code() -> None:
    warnings.warn("from the user's code", UserWarning, stacklevel=1)


USERS_LINE = _users_code.__code__.co_firstlineno + 1


def test_a_warning_from_outside_the_package_keeps_its_line_and_is_shown_once() -> None:
    # The user's code (a model's forward traced several times) is not selfdamage's.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _calls(_users_code, times=3)
    assert [(w.filename, w.lineno, str(w.message)) for w in caught] == [
        (__file__, USERS_LINE, "from the user's code")
    ]


@pytest.mark.parametrize(
    "where",
    [{"module": re.escape(__name__)}, {"module": re.escape(__name__), "lineno": USERS_LINE}],
)
def test_a_filter_on_the_users_module_applies_to_their_warning(where: dict[str, Any]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="from the user's code", **where)
        _calls(_users_code, times=2)
    assert caught == []


def test_a_filter_as_error_on_the_users_warning_raises_where_it_is_raised() -> None:
    calls: list[int] = []

    def users_code() -> None:
        calls.append(1)
        _users_code()

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="from the user's code")
        with pytest.raises(UserWarning, match="from the user's code"):
            _calls(users_code, times=3)
    assert len(calls) == 1  # stopped at the first, as without the entry point


def _current_line() -> int:
    import inspect

    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno
