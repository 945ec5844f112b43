"""The one DDP harness of the test suite: a worker in 2 gloo processes on CPU.

``run(worker, tmp_path, *args)`` starts ``world`` processes, initialises a gloo process
group in each, calls ``worker(rank, world, *args)`` and returns what each rank returned
(anything ``torch.save`` can write), in rank order. ``worker`` must be a module-level
function of a test module, so the spawned processes can import it.
``check_twin_step`` is the common check built on it: a wrapper's DDP step against one
process on the whole batch.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from selfdamage import SelfDamagingWrapper

WORLD = 2


def run(worker: Callable[..., Any], tmp_path: Path, *args: Any, world: int = WORLD) -> list[Any]:
    """Runs ``worker(rank, world, *args)`` on ``world`` gloo ranks; returns their results."""
    mp.spawn(_entry, args=(worker, _free_port(), str(tmp_path), world, args), nprocs=world)
    return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(world)]


def _entry(
    rank: int, worker: Callable[..., Any], port: int, out: str, world: int, args: tuple[Any, ...]
) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = worker(rank, world, *args)
        torch.save(result, Path(out) / f"rank{rank}.pt")
        dist.barrier()  # every rank is done with every collective
    except BaseException:
        dist.destroy_process_group()
        raise
    # Ends without destroy_process_group: under torch 2.5 it can deadlock (it holds the GIL
    # while a gloo thread needs it to free a tensor). The system closes the connections.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TwinStep(nn.Module):
    """Both branches inside one forward, as DDP needs; a per-sample loss, averaged."""

    def __init__(self, wrapper: SelfDamagingWrapper) -> None:
        super().__init__()
        self.wrapper = wrapper

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        return F.mse_loss(self.wrapper(x0), self.wrapper.damaged(x1))


def check_twin_step(
    make_wrapper: Callable[[int], SelfDamagingWrapper],
    batch: tuple[Tensor, Tensor],
    tmp_path: Path,
    *,
    refresh: bool = True,
) -> None:
    """One DDP step of ``TwinStep`` equals one process on the whole batch: masks and gradients.

    ``make_wrapper(rank)`` builds the wrapper as rank ``rank`` would (seeding its own
    ``mask_seed``; DDP broadcasts rank 0's); the model must have no batch statistics, so DDP
    is exactly one bigger batch. It must be a module-level function. With ``refresh=False``
    no rank refreshes after wrapping in DDP: the step runs on the masks built at
    construction, rank 0's after DDP's broadcast.
    """
    ranks = run(_twin_step_worker, tmp_path, make_wrapper, batch, refresh)
    wrapper = make_wrapper(0)
    if refresh:
        wrapper.refresh_mask()
    TwinStep(wrapper)(*batch).backward()
    for name, mask in wrapper.named_masks():
        for result in ranks:
            assert torch.equal(result["masks"][name], mask), name
    for name, param in wrapper.model.named_parameters():
        for result in ranks:
            torch.testing.assert_close(result["grads"][name], param.grad, rtol=1e-5, atol=1e-7)


def _twin_step_worker(
    rank: int,
    world: int,
    make_wrapper: Callable[[int], SelfDamagingWrapper],
    batch: tuple[Tensor, Tensor],
    refresh: bool,
) -> dict[str, dict[str, Tensor]]:
    wrapper = make_wrapper(rank)
    ddp = DistributedDataParallel(TwinStep(wrapper))
    if refresh:
        wrapper.refresh_mask()
    x0, x1 = (x.chunk(world)[rank] for x in batch)
    ddp(x0, x1).backward()
    return {
        "masks": {k: v.clone() for k, v in wrapper.named_masks()},
        "grads": {
            k: p.grad.clone() for k, p in wrapper.model.named_parameters() if p.grad is not None
        },
    }
