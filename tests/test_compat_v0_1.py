"""Checkpoints written by selfdamage 0.1 load into 0.2 objects built with the new spellings.

The fixtures were written by ``tests/fixtures/make_v0_1_checkpoints.py`` with 0.1.0: a
tiny model, trained a few steps, its ``state_dict``, an input and the outputs it gave.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures.make_v0_1_checkpoints import tiny_model
from torch import nn

from selfdamage import ChannelDamage, Damage, SelfDamagingWrapper, WeightDamage
from selfdamage.adapters import SimCLRAdapter

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict[str, Any]:
    saved: dict[str, Any] = torch.load(FIXTURES / name, weights_only=True)
    return saved


def realised_sparsity(wrapper: SelfDamagingWrapper) -> float:
    masks = [mask for _, mask in wrapper.named_masks()]
    return 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


@pytest.mark.parametrize(
    ("kind", "make_damage"),
    [
        ("weight", lambda x: WeightDamage(0.5, random_ratio=0.1)),
        # 0.1's twin was the masked one; the compact twin: tests/damage/test_compact.py
        ("channel", lambda x: ChannelDamage(0.5, example_inputs=x[:2], compact=False)),
    ],
)
def test_wrapper_checkpoint(kind: str, make_damage: Any) -> None:
    saved = load(f"v0_1_wrapper_{kind}.pt")
    damage: Damage = make_damage(saved["input"])
    wrapper = SelfDamagingWrapper(tiny_model(), damage=damage)
    wrapper.load_state_dict(saved["state_dict"])  # strict
    wrapper.eval()
    with torch.no_grad():
        dense, twin = wrapper(saved["input"]), wrapper.damaged(saved["input"])
    torch.testing.assert_close(dense, saved["dense"], rtol=0, atol=0)
    torch.testing.assert_close(twin, saved["twin"], rtol=0, atol=0)
    assert wrapper.sparsity == pytest.approx(realised_sparsity(wrapper), abs=1e-12)
    for name, mask in wrapper.named_masks():
        assert torch.equal(mask, saved["state_dict"][f"masks.{name}"]), name
    if kind == "channel":
        assert wrapper.channel_sparsity == pytest.approx(0.5, abs=0.1)


def test_simclr_adapter_checkpoint() -> None:
    saved = load("v0_1_simclr_adapter.pt")
    backbone = nn.Sequential(*list(tiny_model())[:-1])
    adapter = SimCLRAdapter(backbone, feature_dim=6, damage=WeightDamage(0.5))
    adapter.load_state_dict(saved["state_dict"])  # strict
    adapter.eval()
    x = saved["input"]
    with torch.no_grad():
        loss = adapter(x, x.flip(-1))
    torch.testing.assert_close(loss, saved["loss"], rtol=0, atol=0)
    assert adapter.wrapper.sparsity == pytest.approx(realised_sparsity(adapter.wrapper))
