"""DDP with the wrapper: 2 gloo processes on CPU against a single-process run."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from selfdamage import SelfDamagingWrapper

WORLD = 2


def make_model() -> nn.Module:
    """A model without batch statistics, so DDP is exactly a bigger batch."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nn.Flatten(),
        nn.Linear(288, 4),
    )


class Step(nn.Module):
    """Both branches inside one forward, as DDP needs; a per-sample loss, averaged."""

    def __init__(self, wrapper: SelfDamagingWrapper) -> None:
        super().__init__()
        self.wrapper = wrapper

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        return F.mse_loss(self.wrapper(x0), self.wrapper.damaged(x1))


def batch() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(7)
    return torch.randn(8, 3, 8, 8, generator=gen), torch.randn(8, 3, 8, 8, generator=gen)


def _worker(rank: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    model = make_model()
    torch.manual_seed(1000 + rank)  # every rank draws its own seed for the random part
    ddp = DistributedDataParallel(Step(SelfDamagingWrapper(model, 0.6, random_ratio=0.3)))
    ddp.module.wrapper.refresh_mask()
    x0, x1 = (x.chunk(WORLD)[rank] for x in batch())
    ddp(x0, x1).backward()
    masks = {k: v.clone() for k, v in ddp.module.wrapper.named_masks()}
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    torch.save({"masks": masks, "grads": grads}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestDistributed:
    def test_masks_identical_and_gradients_match_single_process(self, tmp_path: Path) -> None:
        mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
        ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

        # Reference: one process, the whole batch, rank 0's seed (DDP broadcasts its buffers).
        model = make_model()
        torch.manual_seed(1000)
        step = Step(SelfDamagingWrapper(model, 0.6, random_ratio=0.3))
        step.wrapper.refresh_mask()
        step(*batch()).backward()

        for name, mask in step.wrapper.named_masks():
            for result in ranks:
                assert torch.equal(result["masks"][name], mask), name
        for name, param in model.named_parameters():
            for result in ranks:
                torch.testing.assert_close(result["grads"][name], param.grad, rtol=1e-5, atol=1e-7)
