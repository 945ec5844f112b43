"""Wrappers pickled whole by selfdamage 0.2 (``torch.save(wrapper)``) load and keep working.

The fixtures were written by ``tests/fixtures/make_v0_2_pickles.py`` with 0.2.0 and with
the last 0.2 state; they name that release's hook functions and classes, which resolve
through ``selfdamage._compat``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures.make_v0_1_checkpoints import tiny_model

from selfdamage import ChannelDamage, Damage, SelfDamagingWrapper, WeightDamage

FIXTURES = Path(__file__).parent / "fixtures"
# As in test_compat_v0_1.py: outputs stored on another CPU agree to float32 rounding.
OUTPUT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
PICKLES = [
    f"{tag}_wrapper_{kind}.pt" for tag in ("v0_2_0", "v0_2_late") for kind in ("weight", "channel")
]


def load(name: str) -> dict[str, Any]:
    saved: dict[str, Any] = torch.load(FIXTURES / name, weights_only=False)  # our own file
    return saved


@pytest.mark.parametrize("name", PICKLES)
def test_pickled_wrapper_gives_its_outputs(name: str) -> None:
    saved = load(name)
    wrapper: SelfDamagingWrapper = saved["wrapper"]
    assert isinstance(wrapper, SelfDamagingWrapper)
    with torch.no_grad():
        dense, twin = wrapper(saved["input"]), wrapper.damaged(saved["input"])
    torch.testing.assert_close(dense, saved["dense"], **OUTPUT_TOLERANCE)
    torch.testing.assert_close(twin, saved["twin"], **OUTPUT_TOLERANCE)


@pytest.mark.parametrize("name", PICKLES)
def test_pickled_wrapper_state_loads_into_a_current_wrapper(name: str) -> None:
    saved = load(name)
    x = saved["input"]
    if "channel" in name:
        damage: Damage = ChannelDamage(0.5, example_inputs=x[:2])
    else:
        damage = WeightDamage(0.5, random_ratio=0.1)
    current = SelfDamagingWrapper(tiny_model(), damage=damage)
    current.load_state_dict(saved["wrapper"].state_dict())  # strict, settings checked
    current.eval()
    with torch.no_grad():
        torch.testing.assert_close(current(x), saved["dense"], **OUTPUT_TOLERANCE)
        torch.testing.assert_close(current.damaged(x), saved["twin"], **OUTPUT_TOLERANCE)


@pytest.mark.parametrize("name", PICKLES)
def test_the_pickled_load_hook_runs(name: str) -> None:
    # The hook the pickle names (0.2.0's on the wrapper, later ones' on wrapper.masks)
    # resolves and runs: a loaded mask that removes a whole tensor warns, masks stay bool.
    wrapper: SelfDamagingWrapper = load(name)["wrapper"]
    state = wrapper.state_dict()
    state["masks.0.weight"] = torch.zeros_like(state["masks.0.weight"], dtype=torch.uint8)
    with pytest.warns(UserWarning, match=r"the twin masks every entry of '0\.weight'"):
        wrapper.load_state_dict(state, assign=True)
    mask = wrapper.masks.get_buffer("0.weight")
    assert mask.dtype == torch.bool and not bool(mask.any())
    wrapper.refresh_mask()  # and the wrapper damages again from its weights
    realised = wrapper.channel_sparsity if "channel" in name else wrapper.sparsity
    assert realised == pytest.approx(0.5, abs=0.1)
