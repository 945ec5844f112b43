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

# The stored outputs were computed on another CPU: float32 kernels there may sum in another
# order (vector width, FMA), so outputs can differ by rounding (3e-8 seen), not bit for bit.
# A sum of n products rounded in any order is within about n * u of the exact one, relative
# to the sum of the magnitudes, u = 2**-24 (float32 unit roundoff). Wrapper outputs: the
# longest chain adds 3*3*3 + 4*3*3 + 8*8 + 6 = 133 terms (two convolutions, the pooling,
# the Linear layer); 133 * 2**-24 = 7.9e-6, so rtol = atol = 1e-5 for outputs of order 1
# (one mask entry flipped moves the twin output by 4e-3, 400 times that). The loss adds the
# head (6 + 6) and the 128-d cosine similarities to that chain and divides by the
# temperature 0.2: 5 * (127 + 12 + 128) * 2**-24 = 8.0e-5, so rtol = 1e-4.
OUTPUT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
LOSS_TOLERANCE = {"rtol": 1e-4, "atol": 0.0}


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
    torch.testing.assert_close(dense, saved["dense"], **OUTPUT_TOLERANCE)
    torch.testing.assert_close(twin, saved["twin"], **OUTPUT_TOLERANCE)
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
    torch.testing.assert_close(loss, saved["loss"], **LOSS_TOLERANCE)
    assert adapter.wrapper.sparsity == pytest.approx(realised_sparsity(adapter.wrapper))
