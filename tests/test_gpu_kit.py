"""The GPU evidence kit (benchmarks/gpu): its errors, and a --tiny run of a prepared kit.

The full run needs a kit made by ``benchmarks/gpu/prepare.sh DIR``: set
``SELFDAMAGE_GPU_KIT=DIR`` to run it (a CPU smoke run of the whole path); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "gpu" / "run.sh"
DATA_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")  # fmt: skip


def run_kit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(RUN), *map(str, args)], capture_output=True, text=True, env=env, timeout=1800
    )


def fake_kit(root: Path, *, data: bool) -> Path:
    (root / "wheels").mkdir(parents=True)
    for name in ("lightly-1.6.0-py3-none-any.whl", "torch_pruning-1.6.1-py3-none-any.whl"):
        (root / "wheels" / name).touch()
    (root / "fashion-mnist").mkdir()
    for name in DATA_FILES if data else ():
        (root / "fashion-mnist" / f"{name}.gz").touch()
    return root


class TestErrors:
    def test_missing_kit(self, tmp_path: Path) -> None:
        done = run_kit(tmp_path / "no-kit", tmp_path / "out", "--tiny")
        assert done.returncode == 2
        assert "does not exist; make it with benchmarks/gpu/prepare.sh" in done.stderr

    def test_missing_wheel(self, tmp_path: Path) -> None:
        (tmp_path / "kit" / "wheels").mkdir(parents=True)
        done = run_kit(tmp_path / "kit", tmp_path / "out", "--tiny")
        assert done.returncode == 2 and "no lightly wheel in" in done.stderr

    def test_missing_data_file(self, tmp_path: Path) -> None:
        kit = fake_kit(tmp_path / "kit", data=False)
        done = run_kit(kit, tmp_path / "out", "--tiny")
        assert done.returncode == 2 and "train-images-idx3-ubyte.gz is missing" in done.stderr

    def test_no_gpu(self, tmp_path: Path) -> None:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        kit = fake_kit(tmp_path / "kit", data=True)
        done = run_kit(kit, tmp_path / "out")
        assert done.returncode == 2 and "no CUDA GPU" in done.stderr and "--tiny" in done.stderr


@pytest.mark.skipif(
    not os.environ.get("SELFDAMAGE_GPU_KIT"),
    reason="set SELFDAMAGE_GPU_KIT to a folder made by benchmarks/gpu/prepare.sh",
)
def test_tiny_run_of_a_prepared_kit(tmp_path: Path) -> None:
    done = run_kit(os.environ["SELFDAMAGE_GPU_KIT"], tmp_path / "out", "--tiny")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["evidence.log", "groups.png", "results.json"]
    results = json.loads((out / "results.json").read_text())
    assert results["evidence"]["chosen"]["epochs"] == 1
    assert [r["variant"] for r in results["runs"]].count("balanced") == 2
    assert results["summary"]["sdclr - baseline"]["orders"] == 2
    assert "replay: benchmarks/gpu/run.sh KIT OUT --epochs 1" in done.stdout
    assert "smallest effect this design can detect" in done.stdout
