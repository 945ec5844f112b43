"""Speed and peak memory of an SDCLR step against a plain SimCLR step, for the evidence kit.

Four variants of one training step (two views, NT-Xent, backward, SGD update), each on a
fresh :class:`~selfdamage.adapters.SimCLRAdapter`:

- ``plain``: SimCLR, both views through the dense model (``baseline=True``);
- ``weight-0.9``: SDCLR with ``WeightDamage(0.9)``;
- ``channel-0.5``: SDCLR with ``ChannelDamage(0.5)``, the compact twin;
- ``channel-0.5-masked``: the same with ``compact=False`` (the twin masks whole channels).

On two models: the CIFAR-style ResNet-18 at width 64, batch 256 of 32 px (the study's
model), and torchvision's ResNet-50, batch 64 of 128 px. On CUDA with bf16 autocast and
channels_last, as the study trains; each step timed with CUDA events after the warm-up
steps (no host sync inside the timed loop), the median over the timed steps, and the peak
CUDA memory of each variant (``torch.cuda.reset_peak_memory_stats`` between variants).
``tiny=True`` runs the same code on the CPU with tiny sizes, timed with
``time.perf_counter``, without peak memory (``None``).

Run alone: ``python benchmarks/gpu/speed.py [--tiny]`` (``selfdamage`` importable).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torchvision
from torch import nn

from selfdamage import ChannelDamage, Damage, WeightDamage
from selfdamage.adapters import SimCLRAdapter
from selfdamage.backbones import cifar_resnet18

VARIANTS = ("plain", "weight-0.9", "channel-0.5", "channel-0.5-masked")
BUDGET_S = 60.0  # variants not started by then are skipped, so the study keeps its time


@dataclass(frozen=True)
class Model:
    """One model of the measurement: its name, width, batch and image size."""

    arch: str  # "cifar_resnet18" or "resnet50"
    width: int  # cifar_resnet18 only
    batch_size: int
    image_size: int


FULL = (Model("cifar_resnet18", 64, 256, 32), Model("resnet50", 64, 64, 128))
TINY = (Model("cifar_resnet18", 4, 8, 16), Model("resnet50", 64, 2, 16))


def measure(*, tiny: bool, budget_s: float = BUDGET_S) -> dict[str, Any]:
    """Times every variant on every model; returns the ``performance`` record."""
    device = torch.device("cpu" if tiny else "cuda")
    cuda = device.type == "cuda"
    warmup, timed = (1, 2) if tiny else (5, 15)
    began = time.perf_counter()
    models = []
    for model in TINY if tiny else FULL:
        variants: dict[str, Any] = {}
        for variant in VARIANTS:
            if time.perf_counter() - began > budget_s:
                variants[variant] = {"skipped": f"over the {budget_s:g} s budget"}
            else:
                variants[variant] = _measure_variant(model, variant, device, warmup, timed)
        plain = variants["plain"].get("median_ms")
        for variant, record in variants.items():
            if plain and record.get("median_ms") is not None:
                record["ratio_to_plain"] = record["median_ms"] / plain
            print(f"speed: {_describe(model)}, {variant}: {_format(record)}", flush=True)
        models.append({**asdict(model), "model": _describe(model), "variants": variants})
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()  # the study's processes get the memory
    return {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "amp": "bf16" if cuda else None,
        "channels_last": cuda,
        "clock": "CUDA events" if cuda else "time.perf_counter",
        "warmup_steps": warmup,
        "timed_steps": timed,
        "statistic": "median over the timed steps",
        "models": models,
        "wall_s": time.perf_counter() - began,
    }


def _measure_variant(
    spec: Model, variant: str, device: torch.device, warmup: int, timed: int
) -> dict[str, Any]:
    cuda = device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        step = _build_step(spec, variant, device)
        for _ in range(warmup):
            step()
        seconds = _time_cuda(step, timed) if cuda else _time_cpu(step, timed)
    except (RuntimeError, ValueError) as error:  # e.g. out of memory: the study still runs
        return {"error": f"{type(error).__name__}: {error}"}
    return {
        "median_ms": 1000 * statistics.median(seconds),
        "min_ms": 1000 * min(seconds),
        "max_ms": 1000 * max(seconds),
        "peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
    }


def _build_step(spec: Model, variant: str, device: torch.device) -> Callable[[], None]:
    torch.manual_seed(0)
    backbone, feature_dim = _backbone(spec)
    example = torch.randn(2, 3, spec.image_size, spec.image_size)
    damage = _damage(variant, example)
    model = SimCLRAdapter(backbone, feature_dim, damage=damage, baseline=damage is None)
    cuda = device.type == "cuda"
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    model.train()
    model.refresh_mask()  # once per epoch in training: not part of a step
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    shape = (spec.batch_size, 3, spec.image_size, spec.image_size)
    x0 = torch.randn(shape, device=device).contiguous(memory_format=memory_format)
    x1 = torch.randn(shape, device=device).contiguous(memory_format=memory_format)

    def step() -> None:
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else _no_autocast()
        with autocast:
            loss = model(x0, x1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _damage(variant: str, example: torch.Tensor) -> Damage | None:
    if variant == "plain":
        return None
    if variant == "weight-0.9":
        return WeightDamage(0.9)
    return ChannelDamage(0.5, example_inputs=example, compact=variant == "channel-0.5")


def _no_autocast() -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


def _backbone(spec: Model) -> tuple[nn.Module, int]:
    if spec.arch == "cifar_resnet18":
        backbone = cifar_resnet18(width=spec.width)
        return backbone, backbone.feature_dim
    resnet = torchvision.models.resnet50()
    return nn.Sequential(*list(resnet.children())[:-1]), resnet.fc.in_features


def _time_cuda(step: Callable[[], None], steps: int) -> list[float]:
    """Seconds per step from CUDA events; one synchronization, after the last step."""
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
    for start, end in zip(starts, ends):
        start.record()
        step()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / 1000 for start, end in zip(starts, ends)]


def _time_cpu(step: Callable[[], None], steps: int) -> list[float]:
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def _describe(spec: Model) -> str:
    name = f"CIFAR ResNet-18 (width {spec.width})" if spec.arch == "cifar_resnet18" else "ResNet-50"
    return f"{name}, batch {spec.batch_size}, {spec.image_size} px"


def _format(record: dict[str, Any]) -> str:
    if "median_ms" not in record:
        return record.get("error") or record["skipped"]
    text = (
        f"{record['median_ms']:.1f} ms per step (min {record['min_ms']:.1f}, "
        f"max {record['max_ms']:.1f}), {record['ratio_to_plain']:.2f} x plain"
    )
    if record["peak_memory_mib"] is not None:
        text += f", peak {record['peak_memory_mib']:.0f} MiB"
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny sizes")
    print(json.dumps(measure(tiny=parser.parse_args().tiny), indent=2))
