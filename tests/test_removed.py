"""The spellings 0.2 deprecated are removed in 1.0: each fails with an error naming the new one."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest
import torch
from fixtures.make_v0_1_checkpoints import tiny_model
from torch import nn

from selfdamage import SelfDamagingWrapper
from selfdamage._compat.module_names import PastModuleFinder


def x() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


class TestWrapperArguments:
    @pytest.mark.parametrize(
        ("damage", "new"),
        [
            ("weight", r"use damage=None \(the default\) or damage=WeightDamage\(prune_ratio"),
            (True, r"use damage=None \(the default\) or damage=WeightDamage\(prune_ratio"),
            ("channel", r"use damage=ChannelDamage\(prune_ratio, example_inputs=\.\.\.\) instead"),
            (False, r"use the bare model \(no wrapper\) for a baseline instead"),
        ],
    )
    def test_removed_damage_spellings(self, damage: Any, new: str) -> None:
        removed = rf"damage={damage!r} was removed in selfdamage 1\.0; {new}"
        with pytest.raises(TypeError, match=removed):
            SelfDamagingWrapper(tiny_model(), 0.5, damage=damage)

    @pytest.mark.parametrize(
        "name", ["importance", "example_inputs", "ignored_layers", "max_channel_ratio"]
    )
    def test_removed_channel_options(self, name: str) -> None:
        # Each alone, with and without damage="channel", and with the value 0.1 gave.
        also = "" if name == "example_inputs" else rf", {name}=\.\.\."
        new = rf"use damage=ChannelDamage\(prune_ratio, example_inputs=\.\.\.{also}\) instead"
        for options in ({name: None}, {name: x(), "damage": "channel"}):
            with pytest.raises(TypeError, match=rf"{name}= was removed in selfdamage 1\.0; {new}"):
                SelfDamagingWrapper(tiny_model(), 0.5, **options)

    def test_other_arguments_are_unchanged(self) -> None:
        with pytest.raises(TypeError, match="unexpected keyword argument 'filter'"):
            SelfDamagingWrapper(tiny_model(), 0.5, filter=1)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"damage must be a selfdamage\.damage\.Damage"):
            SelfDamagingWrapper(tiny_model(), 0.5, damage="filter")  # type: ignore[arg-type]

    def test_errors_come_before_any_work(self) -> None:
        # A model the wrapper would refuse for another reason still gets the removal error.
        with pytest.raises(TypeError, match="damage='channel' was removed"):
            SelfDamagingWrapper(nn.Identity(), damage="channel")  # type: ignore[arg-type]


class TestRemovedModules:
    @pytest.mark.parametrize(
        ("name", "new"),
        [
            ("selfdamage.channel_damage", r"use selfdamage\.damage \(ChannelDamage, "),
            ("selfdamage.adapters._base", r"use selfdamage\.adapters \(SelfDamagingAdapter, "),
        ],
    )
    def test_import_fails_with_the_new_home(self, name: str, new: str) -> None:
        sys.modules.pop(name, None)
        with pytest.raises(ImportError, match=rf"{name} was removed in selfdamage 1\.0; {new}"):
            importlib.import_module(name)

    def test_from_import_fails_too(self) -> None:
        with pytest.raises(ImportError, match=r"selfdamage\.channel_damage was removed"):
            from selfdamage.channel_damage import ChannelDamage  # noqa: F401

    def test_the_finder_answers_only_its_exact_names(self) -> None:
        finder = PastModuleFinder()
        for name in ("selfdamage", "selfdamage.channel", "selfdamage.channel_damage_x", "json"):
            assert finder.find_spec(name) is None
        assert sum(isinstance(f, PastModuleFinder) for f in sys.meta_path) == 1

    def test_other_missing_modules_still_raise_module_not_found(self) -> None:
        with pytest.raises(ModuleNotFoundError, match=r"selfdamage\.no_such_module"):
            importlib.import_module("selfdamage.no_such_module")
