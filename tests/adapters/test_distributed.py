"""The adapters under DDP: 2 gloo processes on CPU against one process on the whole batch.

The models have no batch statistics and the losses and banks gather across ranks
(``gather_distributed=True``; DINO's center is all-reduced by lightly), so the DDP run is
exactly one bigger batch: DDP averages the ranks' gradients, and the mean of the ranks'
losses is the global loss. Two exceptions, where the ranks must agree with each other but
not with one process: lightly's Barlow Twins normalizes each rank's projections over its own
part of the batch before it sums the cross-correlations, and DCLW's weights are a softmax
over each rank's own positive pairs.
"""

from __future__ import annotations

import math
from pathlib import Path

import ddp_harness
import torch
from lightly.loss import (
    BarlowTwinsLoss,
    DCLLoss,
    DCLWLoss,
    NTXentLoss,
    TiCoLoss,
    VICRegLoss,
)
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from selfdamage.adapters import (
    BarlowTwinsAdapter,
    BYOLAdapter,
    DCLAdapter,
    DCLWAdapter,
    DINOAdapter,
    MoCoAdapter,
    NNCLRAdapter,
    SimCLRAdapter,
    SimSiamAdapter,
    TiCoAdapter,
    VICRegAdapter,
)

from .helpers import FEATURES, tiny_backbone, views

WORLD = ddp_harness.WORLD
KINDS = (
    "simclr", "moco", "byol", "barlowtwins", "vicreg", "dcl", "dclw", "simsiam", "nnclr",
    "tico", "dino",
)  # fmt: skip
RANKS_AGREE_ONLY = ("barlowtwins", "dclw")  # per-rank statistics: see the module docstring
STEPS = 3


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, FEATURES))


def make(kind: str) -> nn.Module:
    """An adapter without BatchNorm anywhere, the same on every process."""
    torch.manual_seed(0)
    backbone = tiny_backbone(batch_norm=False)
    if kind == "moco":
        bank = NTXentLoss(0.2, memory_bank_size=(64, FEATURES), gather_distributed=True)
        return MoCoAdapter(backbone, FEATURES, 0.5, head=mlp(), loss=bank)
    if kind in ("byol", "simsiam"):
        adapter = BYOLAdapter if kind == "byol" else SimSiamAdapter
        return adapter(backbone, FEATURES, 0.5, head=mlp(), predictor=mlp())
    if kind == "nnclr":
        loss = NTXentLoss(0.1, gather_distributed=True)
        return NNCLRAdapter(
            backbone, FEATURES, 0.5, head=mlp(), predictor=mlp(), loss=loss,
            memory_bank_size=64, gather_distributed=True,
        )  # fmt: skip
    if kind == "tico":
        loss = TiCoLoss(gather_distributed=True)
        return TiCoAdapter(backbone, FEATURES, 0.5, head=mlp(), loss=loss)
    if kind == "dino":
        return DINOAdapter(backbone, FEATURES, 0.5)  # its default head has no BatchNorm
    losses = {
        "simclr": (SimCLRAdapter, NTXentLoss(temperature=0.2, gather_distributed=True)),
        "barlowtwins": (BarlowTwinsAdapter, BarlowTwinsLoss(gather_distributed=True)),
        "vicreg": (VICRegAdapter, VICRegLoss(gather_distributed=True)),
        "dcl": (DCLAdapter, DCLLoss(gather_distributed=True)),
        "dclw": (DCLWAdapter, DCLWLoss(gather_distributed=True)),
    }
    adapter, loss = losses[kind]
    return adapter(backbone, FEATURES, 0.5, head=mlp(), loss=loss)


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
            first, second = (result[kind] for result in ranks)
            for key, value in first["state"].items():  # the ranks agree exactly
                assert torch.equal(value, second["state"][key]), (kind, key)
            assert all(math.isfinite(loss) for loss in first["losses"]), kind
            if kind in RANKS_AGREE_ONLY:
                continue
            adapter = make(kind)
            reference = train(adapter, adapter, rank=0, world=1)
            for step, loss in enumerate(reference["losses"]):
                mean = (first["losses"][step] + second["losses"][step]) / WORLD
                assert abs(mean - loss) < 1e-5, (kind, step)
            assert first["grads"].keys() == reference["grads"].keys()
            for name, grad in reference["grads"].items():
                torch.testing.assert_close(first["grads"][name], grad, rtol=1e-5, atol=1e-6)
            for key, value in reference["state"].items():
                if key.endswith("memory_bank.bank"):
                    # The same keys, gathered rank by rank instead of view by view.
                    nearest = torch.cdist(first["state"][key], value).argmin(dim=1)
                    assert sorted(nearest.tolist()) == list(range(len(value))), (kind, key)
                    value = value[nearest]
                torch.testing.assert_close(first["state"][key], value, rtol=1e-5, atol=1e-6)
