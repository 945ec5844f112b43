"""The adapters under DDP: 2 gloo processes on CPU against one process on the whole batch.

The models have no batch statistics and the losses gather negatives across ranks
(``gather_distributed=True``), so the DDP run is exactly one bigger batch: DDP averages
the ranks' gradients, and the mean of the ranks' losses is the global loss.
"""

from __future__ import annotations

from pathlib import Path

import ddp_harness
import torch
from lightly.loss import NTXentLoss
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from selfdamage.adapters import BYOLAdapter, MoCoAdapter, SimCLRAdapter

from .helpers import FEATURES, tiny_backbone, views

WORLD = ddp_harness.WORLD
KINDS = ("simclr", "moco", "byol")
STEPS = 3


def make(kind: str) -> nn.Module:
    """An adapter without BatchNorm anywhere, the same on every process."""
    torch.manual_seed(0)

    def mlp() -> nn.Module:
        return nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, FEATURES))

    backbone = tiny_backbone(batch_norm=False)
    if kind == "simclr":
        loss = NTXentLoss(temperature=0.2, gather_distributed=True)
        return SimCLRAdapter(backbone, FEATURES, 0.5, head=mlp(), loss=loss)
    if kind == "moco":
        bank = NTXentLoss(0.2, memory_bank_size=(64, FEATURES), gather_distributed=True)
        return MoCoAdapter(backbone, FEATURES, 0.5, head=mlp(), loss=bank)
    return BYOLAdapter(backbone, FEATURES, 0.5, head=mlp(), predictor=mlp())


def train(model: nn.Module, adapter: nn.Module, rank: int, world: int) -> dict[str, object]:
    """A few SGD steps on this rank's share of fixed global batches."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses: list[float] = []
    grads: dict[str, Tensor] = {}
    for step in range(STEPS):
        if hasattr(adapter, "update_momentum"):
            adapter.update_momentum(0.9)
        x0, x1 = (x.chunk(world)[rank] for x in views(8, seed=step))
        loss = model(x0, x1)
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            grads = {n: p.grad.clone() for n, p in adapter.named_parameters() if p.grad is not None}
        optimizer.step()
        optimizer.zero_grad()
    return {"losses": losses, "grads": grads, "state": adapter.state_dict()}


def _worker(rank: int, world: int) -> dict[str, object]:
    results = {}
    for kind in KINDS:
        adapter = make(kind)
        results[kind] = train(DistributedDataParallel(adapter), adapter, rank, world)
    return results


class TestDistributed:
    def test_ddp_matches_one_process_on_the_whole_batch(self, tmp_path: Path) -> None:
        ranks = ddp_harness.run(_worker, tmp_path)
        for kind in KINDS:
            adapter = make(kind)
            reference = train(adapter, adapter, rank=0, world=1)
            first, second = (result[kind] for result in ranks)
            for key, value in first["state"].items():  # the ranks agree exactly
                assert torch.equal(value, second["state"][key]), (kind, key)
            for step, loss in enumerate(reference["losses"]):
                mean = (first["losses"][step] + second["losses"][step]) / WORLD
                assert abs(mean - loss) < 1e-5, (kind, step)
            assert first["grads"].keys() == reference["grads"].keys()
            for name, grad in reference["grads"].items():
                torch.testing.assert_close(first["grads"][name], grad, rtol=1e-5, atol=1e-6)
            for key, value in reference["state"].items():
                torch.testing.assert_close(first["state"][key], value, rtol=1e-5, atol=1e-6)
