"""The GPU evidence kit (benchmarks/gpu): its errors, and --tiny runs that build nothing.

The fast tests check the errors before any install. The slow ones (``--runslow``; CI runs
them) need a kit: ``SELFDAMAGE_GPU_KIT=DIR`` names one made by
``benchmarks/gpu/prepare.sh DIR`` from this commit, else the session makes one (that needs
the package registries). They run ``run.sh`` with interpreters from fresh virtual
environments that see only the packages the GPU image is assumed to have (symbolic links
into this environment): one without setuptools, wheel and matplotlib, which runs the whole
``--tiny`` path, so nothing is built on the GPU machine and the chart is optional; one with
the setuptools older than 77 that a stock Python 3.11 venv ships, which runs the preflight.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import distribution, requires
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "gpu" / "run.sh"
PREPARE = REPO / "benchmarks" / "gpu" / "prepare.sh"
DATA_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")  # fmt: skip
# What benchmarks/gpu/README.md says the GPU image has; their dependencies come along.
IMAGE = ("torch", "torchvision", "numpy", "tqdm", "pytorch-lightning", "PyYAML")
# Never in the test environments: the build tools, and what the kit brings itself.
NEVER = {"setuptools", "wheel", "pip", "lightly", "torch-pruning", "selfdamage"}


def run_kit(
    *args: str | Path, python: str | Path = sys.executable
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": str(python)}
    env.pop("PYTHONPATH", None)  # the kit's wheels, not this checkout, must be imported
    return subprocess.run(
        ["bash", str(RUN), *map(str, args)], capture_output=True, text=True, env=env, timeout=1800
    )


def head() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def fake_kit(root: Path, *, data: bool, commit: str | None = None) -> Path:
    (root / "wheels").mkdir(parents=True)
    for name in ("lightly-1.6.0", "torch_pruning-1.6.1", "selfdamage-0.2.0"):
        (root / "wheels" / f"{name}-py3-none-any.whl").touch()
    (root / "selfdamage.commit").write_text(f"{commit or head()}\n")
    (root / "fashion-mnist").mkdir()
    for name in DATA_FILES if data else ():
        (root / "fashion-mnist" / f"{name}.gz").touch()
    return root


class TestErrors:
    def test_missing_kit(self, tmp_path: Path) -> None:
        done = run_kit(tmp_path / "no-kit", tmp_path / "out", "--tiny")
        assert done.returncode == 2
        assert "does not exist; make it with benchmarks/gpu/prepare.sh" in done.stderr

    @pytest.mark.parametrize("wheel", ["lightly", "selfdamage"])
    def test_missing_wheel(self, tmp_path: Path, wheel: str) -> None:
        kit = fake_kit(tmp_path / "kit", data=True)
        next((kit / "wheels").glob(f"{wheel}-*.whl")).unlink()
        done = run_kit(kit, tmp_path / "out", "--tiny")
        assert done.returncode == 2 and f"no {wheel} wheel in" in done.stderr

    def test_missing_data_file(self, tmp_path: Path) -> None:
        kit = fake_kit(tmp_path / "kit", data=False)
        done = run_kit(kit, tmp_path / "out", "--tiny")
        assert done.returncode == 2 and "train-images-idx3-ubyte.gz is missing" in done.stderr

    def test_kit_of_another_commit(self, tmp_path: Path) -> None:
        kit = fake_kit(tmp_path / "kit", data=True, commit="0" * 40)
        done = run_kit(kit, tmp_path / "out", "--tiny")
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr  # one line: both commits and the fix
        assert "0" * 40 in lines[0] and head() in lines[0]
        assert "rerun benchmarks/gpu/prepare.sh" in lines[0]
        assert not (tmp_path / "out").exists()  # stopped before anything


class TestVariants:
    """``--variants`` reaches the study; the default design stays SimCLR, SDCLR, balanced."""

    @pytest.fixture
    def evidence(self, monkeypatch: pytest.MonkeyPatch) -> Any:
        monkeypatch.syspath_prepend(str(REPO / "benchmarks" / "gpu"))
        return importlib.import_module("evidence")

    def _args(self, evidence: Any, *extra: str) -> Any:
        base = ["--data-dir", "d", "--out", "o", "--scratch", "s", "--deadline", "0", "--tiny"]
        return evidence._parser().parse_args([*base, *extra])

    def test_default_design_and_variants(self, evidence: Any) -> None:
        from selfdamage.study._variants import study_variants

        default = evidence.base_config(self._args(evidence), chart=False)
        assert [v.name for v in study_variants(default)] == ["baseline", "sdclr", "balanced"]
        assert "variants" not in default.to_dict()
        args = self._args(evidence, "--variants", "simclr", "sdclr", "sdclr+bcl")
        config = evidence.base_config(args, chart=False)
        assert [v.name for v in study_variants(config)] == [
            "baseline",
            "sdclr",
            "sdclr+bcl",
            "balanced",
        ]
        assert evidence._variants_flag(args) == " --variants simclr sdclr sdclr+bcl"

    def test_probe_reserve_counts_every_lbfgs_evaluation(
        self, evidence: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # 20 timed evaluations take 20 s on this fake clock: 1 s each. 5 draws of at most
        # 1,000 iterations of 5/4 evaluations each (linear_probe's default max_iter).
        clock = iter([100.0, 120.0])
        monkeypatch.setattr(evidence.time, "perf_counter", lambda: next(clock))
        config = evidence.base_config(self._args(evidence), chart=False)
        config = dataclasses.replace(config, probe_draws=5, threads=1)
        assert evidence.probe_reserve_s(config) == pytest.approx(5 * 1000 * 5 / 4)

    def test_unknown_variant_stops_before_any_measurement(
        self, evidence: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["--data-dir", "d", "--out", str(tmp_path / "out"), "--scratch", str(tmp_path)]
        code = evidence.main([*argv, "--deadline", "0", "--tiny", "--variants", "sdclr+foo"])
        assert code == 2
        err = capsys.readouterr()
        assert "variants has an unknown name, got 'sdclr+foo'" in err.err
        assert "== speed" not in err.out


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kit of this commit: ``SELFDAMAGE_GPU_KIT``, or one made now with prepare.sh."""
    if os.environ.get("SELFDAMAGE_GPU_KIT"):
        return Path(os.environ["SELFDAMAGE_GPU_KIT"])
    root = tmp_path_factory.mktemp("gpu-kit")
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(PREPARE), str(root)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, "prepare.sh failed (it needs the package registries):\n" + (
        done.stdout[-2000:] + done.stderr[-2000:]
    )
    return root


def image_packages(roots: tuple[str, ...], leave_out: set[str]) -> set[str]:
    """The distributions ``roots`` need in this environment, without ``leave_out``."""
    needed: set[str] = set()
    todo = list(roots)
    while todo:
        name = _normal(todo.pop())
        if name in needed or name in leave_out:
            continue
        needed.add(name)
        for line in requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return needed


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def fresh_venv(root: Path, packages: set[str], *, setuptools: bool) -> Path:
    """A fresh venv that sees ``packages`` of this environment through symbolic links."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True)
    python = root / "bin" / "python"
    if not setuptools:
        subprocess.run(
            [python, "-m", "pip", "uninstall", "-q", "-y", "setuptools", "wheel"],
            check=True,
            capture_output=True,
        )
    links = root / "image"
    links.mkdir()
    for name in packages:
        dist = distribution(name)
        for top in {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}:
            source = Path(str(dist.locate_file(top)))
            if source.suffix != ".pth" and top != "__pycache__" and not (links / top).exists():
                (links / top).symlink_to(source)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "image.pth").write_text(f"{links}\n")
    return python


def imports(python: Path, module: str) -> bool:
    done = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
    return done.returncode == 0


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No setuptools, no wheel, no matplotlib: the image's other packages only."""
    packages = image_packages(IMAGE, NEVER | {"matplotlib"})
    python = fresh_venv(tmp_path_factory.mktemp("bare") / "venv", packages, setuptools=False)
    for module in ("setuptools", "wheel", "pkg_resources", "_distutils_hack", "matplotlib"):
        assert not imports(python, module), module
    yield python


@pytest.mark.slow
def test_tiny_run_builds_nothing(kit: Path, bare_python: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_kit(kit, out, "--tiny", python=bare_python)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["evidence.log", "results.json"]
    assert "the chart (groups.png) is skipped" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["evidence"]["chosen"]["epochs"] == 1
    measured = results["evidence"]["measured"]
    assert 0 < measured["probe_reserve_s"] < measured["eval_s"]
    # The plan counts each evaluation as measured plus the probes' reserve: ceil(runs / jobs)
    # waves of its epochs and one evaluation, 3 runs (variants) per class order.
    plan = results["evidence"]["plan"]
    waves = math.ceil(3 * plan["class_orders"] / plan["jobs"])
    evaluation_s = measured["eval_s"] + measured["probe_reserve_s"]
    predicted_s = waves * (plan["epochs"] * measured["epoch_s"] + evaluation_s)
    assert plan["predicted_s"] == pytest.approx(predicted_s, rel=1e-9)
    assert [r["variant"] for r in results["runs"]].count("balanced") == 2
    assert results["summary"]["sdclr - baseline"]["orders"] == 2
    assert results["settings"]["chart"] is False
    assert "replay: benchmarks/gpu/run.sh KIT OUT --epochs 1" in done.stdout
    assert "--no-chart --out OUT" in done.stdout
    assert "smallest effect this design can detect" in done.stdout
    # The preflight's versions, in the log and in results.json; selfdamage is the kit's.
    preflight = results["evidence"]["preflight"]
    assert preflight["executable"] == str(bare_python) and preflight["matplotlib"] is None
    from_kit = {w.name.split("-")[0]: w.name.split("-")[1] for w in (kit / "wheels").glob("*.whl")}
    expected = {name: distribution(name).version for name in ("torch", "torchvision", "numpy")}
    expected |= {"tqdm": distribution("tqdm").version, "lightly": from_kit["lightly"]}
    expected |= {"torch-pruning": from_kit["torch_pruning"], "selfdamage": from_kit["selfdamage"]}
    for name, version in expected.items():
        assert preflight[name] == version, name
        assert f"{name} {version}" in (out / "evidence.log").read_text()
    commit = "-".join((kit / "selfdamage.commit").read_text().split())  # <commit>[-dirty]
    assert results["provenance"]["git_commit"] == commit
    # The speed of the four steps on both models, on the CPU: no peak CUDA memory.
    performance = results["performance"]
    assert performance["clock"] == "time.perf_counter" and performance["amp"] is None
    assert [m["arch"] for m in performance["models"]] == ["cifar_resnet18", "resnet50"]
    for model in performance["models"]:
        assert list(model["variants"]) == ["plain", "weight-0.9", "channel-0.5",
                                           "channel-0.5-masked"]  # fmt: skip
        for record in model["variants"].values():
            assert "error" not in record
            if "skipped" not in record:  # a loaded machine may run past the budget
                assert record["median_ms"] > 0 and record["peak_memory_mib"] is None
    assert "median_ms" in performance["models"][0]["variants"]["plain"]
    assert "speed: CIFAR ResNet-18 (width 4), batch 8, 16 px, plain:" in done.stdout


@pytest.mark.slow
def test_old_setuptools_and_no_gpu(kit: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # A stock venv's setuptools (65.5 for Python 3.11) cannot build this project (77 can):
    # the kit never asks it to. Without --tiny, the preflight stops at the missing GPU.
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    python = fresh_venv(tmp_path_factory.mktemp("old") / "venv", image_packages(IMAGE, NEVER),
                        setuptools=True)  # fmt: skip
    version = subprocess.run(
        [python, "-c", "import setuptools; print(setuptools.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert int(version.split(".")[0]) < 77, version
    out = tmp_path_factory.mktemp("old-out")
    began = time.monotonic()
    done = run_kit(kit, out, python=python)
    assert done.returncode == 2 and time.monotonic() - began < 120
    assert "preflight: error: missing on" in done.stderr
    assert "no CUDA GPU visible to torch" in done.stderr and "--tiny" in done.stderr


@pytest.mark.slow
def test_preflight_lists_every_missing_package(
    kit: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    python = fresh_venv(tmp_path_factory.mktemp("empty") / "venv", {"numpy"}, setuptools=False)
    out = tmp_path_factory.mktemp("empty-out")
    began = time.monotonic()
    done = run_kit(kit, out, "--tiny", python=python)
    assert done.returncode == 2 and time.monotonic() - began < 60
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, done.stderr
    for name in ("torch", "torchvision", "tqdm"):
        assert re.search(rf"\b{name}\b", errors[0]), name
    assert "numpy;" not in errors[0]  # present, so not listed
    assert errors[0] in (out / "evidence.log").read_text()
