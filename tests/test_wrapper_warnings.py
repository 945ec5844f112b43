"""The wrapper's warnings name the line that called the wrapper, not a line of selfdamage."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import nn

from selfdamage import ChannelDamage, SelfDamagingWrapper
from tests.test_wrapper import SmallNet

FULLY_MASKED = r"the twin masks every entry of 'conv1\.weight'"


def caught_here(record: pytest.WarningsRecorder, message: str) -> list[str]:
    """The files of the recorded warnings whose message contains ``message``."""
    return [w.filename for w in record if message in str(w.message)]


def tiny_conv_wrapper() -> SelfDamagingWrapper:
    torch.manual_seed(0)
    wrapper = SelfDamagingWrapper(SmallNet(), 0.5)
    with torch.no_grad():
        wrapper.model.conv1.weight.mul_(1e-6)  # all under the global threshold
    return wrapper


def test_construction_warning_names_the_callers_line() -> None:
    # A large Linear layer left unmasked: the coverage warning at construction.
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten(), nn.Linear(2, 512))
    with pytest.warns(UserWarning, match="the twin masks only") as record:
        SelfDamagingWrapper(model, 0.5)
    assert caught_here(record, "the twin masks only") == [__file__]


def test_refresh_warning_names_the_callers_line() -> None:
    wrapper = tiny_conv_wrapper()
    with pytest.warns(UserWarning, match=FULLY_MASKED) as record:
        wrapper.refresh_mask()
    assert caught_here(record, "masks every entry") == [__file__]


def test_construction_warning_from_the_first_refresh_names_the_callers_line() -> None:
    # The warning comes from refresh_mask() inside __init__: both are entry points.
    model = SmallNet()
    with torch.no_grad():
        model.conv1.weight.mul_(1e-6)
    with pytest.warns(UserWarning, match=FULLY_MASKED) as record:
        SelfDamagingWrapper(model, 0.5)
    assert caught_here(record, "masks every entry") == [__file__]


def test_load_warning_names_the_callers_line() -> None:
    wrapper = SelfDamagingWrapper(SmallNet(), 0.5)
    state = wrapper.state_dict()
    state["masks.conv1.weight"] = torch.zeros_like(state["masks.conv1.weight"])
    with pytest.warns(UserWarning, match=FULLY_MASKED) as record:
        wrapper.load_state_dict(state)
    assert caught_here(record, "masks every entry") == [__file__]


def test_each_warning_is_raised_once() -> None:
    wrapper = tiny_conv_wrapper()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        wrapper.refresh_mask()
    assert len([w for w in record if "masks every entry" in str(w.message)]) == 1


class WarnsInForward(nn.Module):
    """A user's model whose forward warns: ChannelDamage traces it several times."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        warnings.warn("the user's forward warns", UserWarning, stacklevel=1)
        return self.pool(self.conv2(torch.relu(self.bn(self.conv1(x)))))


FORWARD_LINE = WarnsInForward.forward.__code__.co_firstlineno + 1


def channel_wrapper() -> SelfDamagingWrapper:
    damage = ChannelDamage(0.5, example_inputs=torch.randn(1, 3, 8, 8))
    return SelfDamagingWrapper(WarnsInForward(), damage=damage)


def test_a_models_own_warning_keeps_its_line_and_is_shown_once() -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        channel_wrapper()
    assert [(w.filename, w.lineno) for w in record if "forward warns" in str(w.message)] == [
        (__file__, FORWARD_LINE)
    ]


def test_a_filter_on_the_models_module_ignores_its_warning() -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warnings.filterwarnings(
            "ignore", "the user's forward warns", module=re.escape(__name__), lineno=FORWARD_LINE
        )
        channel_wrapper()
    assert [w for w in record if "forward warns" in str(w.message)] == []
