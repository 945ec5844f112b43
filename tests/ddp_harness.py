"""The one DDP harness of the test suite: a worker in 2 gloo processes on CPU.

``run(worker, tmp_path, *args)`` starts ``world`` processes, initialises a gloo process
group in each, calls ``worker(rank, world, *args)`` and returns what each rank returned
(anything ``torch.save`` can write), in rank order. ``worker`` must be a module-level
function of a test module, so the spawned processes can import it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

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
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
