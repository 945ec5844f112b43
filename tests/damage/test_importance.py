"""Channel importances: names, instances, errors (scoring is tested via ChannelDamage)."""

from __future__ import annotations

import pytest
import torch_pruning as tp

from selfdamage.damage.importance import IMPORTANCES, make_importance


class TestImportance:
    def test_names(self) -> None:
        expected = {
            "magnitude": tp.importance.GroupMagnitudeImportance,
            "taylor": tp.importance.GroupTaylorImportance,
            "lamp": tp.importance.LAMPImportance,
            "bn_scale": tp.importance.BNScaleImportance,
            "random": tp.importance.RandomImportance,
        }
        assert set(expected) == set(IMPORTANCES)
        for name, cls in expected.items():
            assert type(make_importance(name)) is cls

    def test_instance_passes_through(self) -> None:
        imp = tp.importance.GroupMagnitudeImportance(p=1)
        assert make_importance(imp) is imp

    def test_unknown_name_lists_options(self) -> None:
        with pytest.raises(ValueError, match="'magnitude', 'taylor', 'lamp', 'bn_scale', 'random'"):
            make_importance("l1")
        with pytest.raises(TypeError, match="importance"):
            make_importance(3)  # type: ignore[arg-type]
