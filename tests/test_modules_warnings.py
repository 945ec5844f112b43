"""The small shared helpers: a module's device, a mode for a block, warnings at the caller."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

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


def test_warnings_point_at_the_outermost_callers_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _current_line() + 1
        result = _outer()
    assert result == 2
    assert [(w.filename, w.lineno, str(w.message)) for w in caught] == [
        (__file__, line, "from inside")
    ]


def test_held_warnings_are_raised_even_when_the_entry_point_raises() -> None:
    @warns_at_caller
    def failing() -> None:
        warnings.warn("before the error", UserWarning, stacklevel=1)
        raise ValueError("boom")

    with pytest.warns(UserWarning, match="before the error"), pytest.raises(ValueError):
        failing()


def test_a_warning_filtered_as_error_still_raises_at_the_caller() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="from inside"):
            _outer()


def _current_line() -> int:
    import inspect

    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno
