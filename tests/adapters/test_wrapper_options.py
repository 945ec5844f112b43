"""The wrapper options on every adapter: removed spellings and unknown keywords fail at once."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from torch import nn

from selfdamage.adapters import ADAPTERS, MoCoAdapter, SimCLRAdapter
from selfdamage.adapters.wrapper_options import read_wrapper_options

from .helpers import FEATURES, tiny_backbone

# The replacement each message must name, written out here rather than read from _compat.
REMOVED_DAMAGE = [
    (False, "damage=False was removed in selfdamage 1.0; use baseline=True instead."),
    (True, "damage=True was removed in selfdamage 1.0; use damage=None (the default)"),
    ("weight", "damage='weight' was removed in selfdamage 1.0; use damage=None (the default)"),
    ("channel", "damage='channel' was removed in selfdamage 1.0; use damage=ChannelDamage("),
]
REMOVED_KEYWORDS = {
    "importance": "magnitude",
    "example_inputs": torch.zeros(2, 3, 8, 8),
    "ignored_layers": [],
    "max_channel_ratio": 0.5,
}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize(("damage", "message"), REMOVED_DAMAGE)
def test_removed_damage_spelling_raises_at_construction(
    name: str, damage: object, message: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        ADAPTERS[name](tiny_backbone(), FEATURES, 0.5, damage=damage)


@pytest.mark.parametrize(("keyword", "value"), sorted(REMOVED_KEYWORDS.items()))
def test_removed_channel_keyword_raises_at_construction(keyword: str, value: Any) -> None:
    options = "example_inputs=..." + ("" if keyword == "example_inputs" else f", {keyword}=...")
    message = (
        f"{keyword}= was removed in selfdamage 1.0; use "
        f"damage=ChannelDamage(prune_ratio, {options}) instead."
    )
    with pytest.raises(TypeError, match=re.escape(message)):
        SimCLRAdapter(tiny_backbone(), FEATURES, 0.5, **{keyword: value})


def test_unknown_keyword_names_the_adapter() -> None:
    with pytest.raises(TypeError, match=r"SimCLRAdapter\.__init__\(\) got an unexpected keyword"):
        SimCLRAdapter(tiny_backbone(), FEATURES, 0.5, bogus=1)  # type: ignore[call-arg]


def test_unknown_keyword_gets_the_closest_and_every_keyword_taken() -> None:
    message = (
        "SimCLRAdapter.__init__() got an unexpected keyword argument 'tempreature'. Did you "
        "mean 'temperature'? It takes head, loss, temperature, damage, baseline, "
        "random_ratio, prunable and twin_norm."
    )
    with pytest.raises(TypeError, match=re.escape(message)):
        SimCLRAdapter(tiny_backbone(), FEATURES, 0.5, tempreature=0.1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"'memory_bank'\. Did you mean 'memory_bank_size'\?"):
        MoCoAdapter(tiny_backbone(), FEATURES, 0.5, memory_bank=16)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("options", "baseline", "wrapper"),
    [
        ({}, False, {"twin_norm": True}),
        ({"baseline": True}, True, {"twin_norm": False}),  # no twin state for a baseline
        (
            {"twin_norm": False, "random_ratio": 0.1},
            False,
            {"random_ratio": 0.1, "twin_norm": False},
        ),
        ({"prunable": nn.Linear}, False, {"prunable": nn.Linear, "twin_norm": True}),
    ],
)
def test_read_wrapper_options(
    options: dict[str, Any], baseline: bool, wrapper: dict[str, Any]
) -> None:
    assert read_wrapper_options(options, "X") == (baseline, wrapper)


def test_baseline_adapter_damage_is_the_strategy() -> None:
    adapter = SimCLRAdapter(tiny_backbone(), FEATURES, 0.5, baseline=True)
    assert adapter.damage is adapter.wrapper.damage and adapter.baseline
