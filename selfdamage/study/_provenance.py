"""The study's provenance record: package versions, commit, device and wall time."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from selfdamage import __version__

__all__ = ["provenance"]


def provenance(device: str, wall_time_s: float) -> dict[str, Any]:
    """The versions of selfdamage, torch and lightly, the commit, the device, the wall time."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        lightly_version: str | None = version("lightly")
    except PackageNotFoundError:
        lightly_version = None
    return {
        "selfdamage": __version__,
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "lightly": lightly_version,
        "device": _device_name(torch.device(device)),
        "wall_time_s": wall_time_s,
    }


def _git_commit() -> str | None:
    """This checkout's commit; ``SELFDAMAGE_GIT_COMMIT`` for an installed copy (the GPU kit)."""
    if os.environ.get("SELFDAMAGE_GIT_COMMIT"):
        return os.environ["SELFDAMAGE_GIT_COMMIT"]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    parts = [platform.machine(), platform.processor(), f"({os.cpu_count()} cores)"]
    return " ".join(part for part in parts if part)
