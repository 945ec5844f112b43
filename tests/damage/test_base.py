"""The Damage base: binding, the mask contract, the twin pass, and a strategy from outside.

The extension test: ``examples/custom_damage.py`` defines ``LayerwiseMagnitudeDamage``
without touching ``selfdamage/``; it must work with the wrapper, every adapter,
``state_dict`` round trips and DDP.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ddp_harness
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfdamage import Damage, SelfDamagingWrapper
from selfdamage.adapters import ADAPTERS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_damage.py"


def _example() -> Any:
    """``examples/custom_damage.py`` as a module (registered, so spawned ranks can unpickle)."""
    if "custom_damage" not in sys.modules:
        spec = importlib.util.spec_from_file_location("custom_damage", EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["custom_damage"] = module
        spec.loader.exec_module(module)
    return sys.modules["custom_damage"]


def layerwise(prune_ratio: float = 0.5, **kwargs: Any) -> Damage:
    damage: Damage = _example().LayerwiseMagnitudeDamage(prune_ratio, **kwargs)
    return damage


def net(batch_norm: bool = True) -> nn.Module:
    torch.manual_seed(0)
    norm = [nn.BatchNorm2d(8)] if batch_norm else []
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), *norm, nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten()
    )


def images(n: int = 4, seed: int = 0) -> Tensor:
    return torch.randn(n, 3, 6, 6, generator=torch.Generator().manual_seed(seed))


class NamesOnly(Damage):
    """A minimal strategy whose masks the tests set by hand."""

    def __init__(self, names: list[str], masks: Mapping[str, Tensor] | None = None) -> None:
        super().__init__(0.5)
        self.names, self.masks = names, masks

    def setup(self, model: nn.Module) -> list[str]:
        return self.names

    def compute_masks(self, model: nn.Module, *, seed: int, first: bool) -> Mapping[str, Tensor]:
        if self.masks is not None:
            return self.masks
        return {n: torch.ones_like(model.get_parameter(n), dtype=torch.bool) for n in self.names}


class TestContract:
    def test_abstract(self) -> None:
        with pytest.raises(TypeError, match="abstract"):
            Damage(0.5)  # type: ignore[abstract]

    def test_ratios_checked(self) -> None:
        with pytest.raises(ValueError, match=r"random_ratio must be in \[0.0, prune_ratio=0.5\]"):
            layerwise(0.5, random_ratio=0.6)

    def test_binds_once(self) -> None:
        damage = layerwise()
        SelfDamagingWrapper(net(), damage=damage)
        with pytest.raises(ValueError, match="already bound to a model"):
            SelfDamagingWrapper(net(), damage=damage)

    def test_param_names_before_binding(self) -> None:
        with pytest.raises(RuntimeError, match="not bound"):
            _ = layerwise().param_names

    @pytest.mark.parametrize(
        ("names", "match"), [([], "selected no parameter"), (["nope.weight"], "not parameters")]
    )
    def test_setup_result_checked(self, names: list[str], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            SelfDamagingWrapper(net(), damage=NamesOnly(names))

    def test_mask_shape_checked(self) -> None:
        bad = {"0.weight": torch.ones(3, dtype=torch.bool)}
        with pytest.raises(ValueError, match=r"compute_masks\(\) returned .* for '0.weight'"):
            SelfDamagingWrapper(net(), damage=NamesOnly(["0.weight"], bad))

    def test_default_twin_forward_masks_and_uses_twin_norm(self) -> None:
        model = net(batch_norm=False)
        wrapper = SelfDamagingWrapper(model, damage=layerwise(0.5))
        masks = dict(wrapper.named_masks())
        x = images()
        h = F.relu(F.conv2d(x, model[0].weight * masks["0.weight"], model[0].bias, padding=1))
        expected = F.conv2d(h, model[2].weight * masks["2.weight"], model[2].bias).flatten(1)
        assert torch.equal(wrapper.damaged(x), expected)

    def test_twin_forward_and_masks_changed_are_the_strategy_s(self) -> None:
        calls: list[str] = []

        class Spy(NamesOnly):
            def twin_forward(self, *args: Any) -> Any:
                calls.append("twin")
                return super().twin_forward(*args)

            def masks_changed(self, model: nn.Module, masks: Mapping[str, Tensor]) -> None:
                calls.append("masks")

        wrapper = SelfDamagingWrapper(net(), damage=Spy(["0.weight"]))
        wrapper.damaged(images())
        wrapper.load_state_dict(wrapper.state_dict())
        assert calls == ["masks", "twin", "masks"]


class TestCustomStrategy:
    def test_layerwise_sparsity(self) -> None:
        wrapper = SelfDamagingWrapper(net(), damage=layerwise(0.5))
        for name, mask in wrapper.named_masks():
            assert mask.float().mean().item() == pytest.approx(0.5, abs=0.01), name
        assert wrapper.prune_ratio == 0.5 and wrapper.sparsity == pytest.approx(0.5, abs=0.01)
        assert repr(wrapper.damage).startswith("LayerwiseMagnitudeDamage(prune_ratio=0.5")

    def test_state_dict_round_trip(self) -> None:
        wrapper = SelfDamagingWrapper(net(), damage=layerwise(0.6, random_ratio=0.2))
        with torch.no_grad():
            wrapper.model[0].weight.mul_(-2.0)
        wrapper.refresh_mask()
        fresh = SelfDamagingWrapper(net(), damage=layerwise(0.6, random_ratio=0.2))
        fresh.load_state_dict(wrapper.state_dict())
        x = images()
        wrapper.eval(), fresh.eval()
        assert torch.equal(wrapper.damaged(x), fresh.damaged(x))
        wrapper.refresh_mask(), fresh.refresh_mask()  # same seed, same count: same masks
        for (name, a), (_, b) in zip(wrapper.named_masks(), fresh.named_masks()):
            assert torch.equal(a, b), name

    @pytest.mark.parametrize("method", sorted(ADAPTERS))
    def test_every_adapter(self, method: str) -> None:
        backbone = nn.Sequential(net(), nn.Linear(128, 16))
        heads: dict[str, Any] = {"head": nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16))}
        if method == "byol":
            heads["predictor"] = nn.Linear(16, 16)
        if method == "moco":
            heads["memory_bank_size"] = 0
        adapter = ADAPTERS[method](backbone, 16, damage=layerwise(0.5), **heads)
        assert adapter.damage.settings["layer_types"] == "Conv2d" and not adapter.baseline
        loss = adapter(images(8), images(8, seed=1))
        loss.backward()
        assert torch.isfinite(loss)
        assert adapter.wrapper.sparsity == pytest.approx(0.5, abs=0.01)


def _ddp_wrapper(rank: int) -> SelfDamagingWrapper:
    model = net(batch_norm=False)
    torch.manual_seed(1000 + rank)  # every rank draws its own mask_seed; DDP broadcasts 0's
    return SelfDamagingWrapper(model, damage=layerwise(0.6, random_ratio=0.3))


class TestDistributed:
    def test_custom_strategy_under_ddp(self, tmp_path: Path) -> None:
        ddp_harness.check_twin_step(_ddp_wrapper, (images(8), images(8, seed=1)), tmp_path)


def test_find_prunable_warns_at_the_callers_line() -> None:
    from selfdamage.damage.base import find_prunable

    normalized = nn.utils.parametrizations.weight_norm(nn.Conv2d(1, 2, 3))
    model = nn.Sequential(normalized, nn.Conv2d(2, 2, 3))
    with pytest.warns(UserWarning, match="forward does not use their weight as is") as record:
        names = find_prunable(model, nn.Conv2d)
    assert names == ["1.weight"]
    assert [w.filename for w in record] == [__file__]
