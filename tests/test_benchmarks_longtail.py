"""``benchmarks/step_cost.py --longtail``: its steps do the work they claim to time.

The timed ``sdclr+bcl`` step must be the SDCLR step (same loss, same gradients, checked
against lightly's ``NTXentLoss``) plus BCL's bookkeeping (the batch's losses recorded at
its indices), and ``sdclr+tau`` must write the cosine schedule's temperature (hand-computed
from Kukleva et al.'s formula) before each step. CI smoke-runs the script (``.ci/run``);
the slow test does the same from pytest.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightly.loss import NTXentLoss

from selfdamage import SelfDamagingWrapper
from selfdamage.longtail import CosineTemperature, MomentumLoss

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import _longtail_steps as longtail  # noqa: E402  (benchmarks/ is no package)


def _wrapper() -> SelfDamagingWrapper:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 36, 16)
    )
    return SelfDamagingWrapper(model, prune_ratio=0.5, prunable=(torch.nn.Conv2d, torch.nn.Linear))


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, 8, 8, generator=generator), torch.randn(
        6, 3, 8, 8, generator=generator
    )


def _grads(wrapper: SelfDamagingWrapper) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in wrapper.named_parameters() if p.grad is not None}


def test_bcl_step_is_the_sdclr_step_plus_the_momentum_record() -> None:
    x0, x1 = _inputs()
    wrapper = _wrapper()
    reference = NTXentLoss(temperature=0.2)(wrapper(x0), wrapper.damaged(x1))
    reference.backward()
    expected = _grads(wrapper)
    wrapper.zero_grad(set_to_none=True)

    tracker = MomentumLoss(20)
    index = torch.tensor([3, 17, 0, 9, 12, 5])
    step = longtail.bcl_step(
        wrapper, NTXentLoss(temperature=0.2), tracker, index, x0, x1, lambda out: out
    )
    step()

    got = _grads(wrapper)
    assert got.keys() == expected.keys() and got
    for name, grad in expected.items():  # float32, a sum of 6 per-sample terms
        torch.testing.assert_close(got[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    recorded = tracker.epoch_loss[index]
    torch.testing.assert_close(recorded.mean(), reference.detach(), rtol=1e-5, atol=1e-6)
    assert bool((recorded > 0).all())
    assert tracker.seen.nonzero().flatten().tolist() == sorted(index.tolist())


def test_tau_step_writes_the_cosine_temperature_before_each_step() -> None:
    x0, x1 = _inputs()
    wrapper = _wrapper()
    criterion = NTXentLoss(temperature=0.2)
    schedule = CosineTemperature(0.1, 1.0, 400)
    step = longtail.tau_step(wrapper, criterion, schedule, x0, x1, lambda out: out)
    step()
    assert criterion.temperature == 1.0  # tau_max at epoch 0
    assert schedule.steps == 1
    step()
    # tau(1) = 0.1 + 0.9 * (1 + cos(2 pi / 400)) / 2, by hand
    assert criterion.temperature == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 200)))


def test_time_bookkeeping_times_every_piece() -> None:
    times = longtail.time_bookkeeping(4, 8, 32, repeats=3)
    assert list(times) == ["ntxent", "per-sample", "update", "momentum-step", "tau"]
    assert all(len(t) == 3 and min(t) >= 0 for t in times.values())


@pytest.mark.slow
def test_step_cost_longtail_runs(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    command = [
        sys.executable,
        str(BENCHMARKS / "step_cost.py"),
        *("--rounds", "1", "--batch-size", "4", "--width", "8", "--channel-ratios"),
        *("--no-reference", "--longtail", "--bookkeeping-repeats", "3", "--json", str(out)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "sdclr+bcl" in done.stdout and "bcl bookkeeping" in done.stdout
    result = json.loads(out.read_text())
    assert {"sdclr+bcl", "sdclr+tau"} <= set(result["results"])
    assert {"bcl bookkeeping", "loss swap", "tau per step"} <= set(result["longtail"])
