"""The zoo's checks: one place used by the slow test and by the table script.

Each check builds its references itself (a ``deepcopy`` of the bare model, masks read from
``wrapper.state_dict()``, gradients from a twin-only backward pass) and raises an
``AssertionError`` that says which invariant broke. :func:`make_wrapper` is the only place
that constructs a ``SelfDamagingWrapper``: when the construction API changes, change it there.
"""

from __future__ import annotations

import copy
import json
import math
import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from selfdamage import ChannelDamage, SelfDamagingWrapper, WeightDamage
from selfdamage.damage._scope import weight_transform

from .models import ZooModel, zoo_model

__all__ = [
    "CHANNEL_RATIO",
    "KINDS",
    "WEIGHT_RATIO",
    "Outcome",
    "check_channel_damage",
    "check_weight_damage",
    "make_wrapper",
    "run_case",
    "run_case_isolated",
]

KINDS = ("weight", "channel")
WEIGHT_RATIO = 0.9
"""``prune_ratio`` of the weight-damage checks (the paper's)."""
CHANNEL_RATIO = 0.5
"""``prune_ratio`` of the channel-damage checks."""


def make_wrapper(
    model: nn.Module,
    prune_ratio: float,
    *,
    prunable: tuple[type[nn.Module], ...],
    channel: bool = False,
    example_inputs: Tensor | None = None,
) -> SelfDamagingWrapper:
    """Every wrapper of the zoo is built here.

    Args:
        model: The bare model.
        prune_ratio: Fraction of weights (or channels) the twin loses.
        prunable: Module types whose weights (or output channels) are pruned.
        channel: Channel damage instead of weight damage.
        example_inputs: The input torch-pruning traces (channel damage only).
    """
    if channel:
        damage = ChannelDamage(prune_ratio, example_inputs=example_inputs, prunable=prunable)
        return SelfDamagingWrapper(model, damage=damage)
    return SelfDamagingWrapper(model, damage=WeightDamage(prune_ratio, prunable=prunable))


# ----------------------------------------------------------------------------- helpers


def _tensors(out: Any) -> list[Tensor]:
    """Every tensor in a model output (a tensor, a namedtuple, a list or a dict)."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _tensors(v)]
    return []


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(got: Mapping[str, Tensor], want: Mapping[str, Tensor], what: str) -> None:
    assert list(got) == list(want), f"{what}: state_dict keys differ"
    changed = [k for k in want if not torch.equal(got[k], want[k])]
    assert not changed, f"{what}: {len(changed)} entries changed, e.g. {changed[:5]}"


def _assert_same_output(got: Any, want: Any, what: str) -> None:
    a, b = _tensors(got), _tensors(want)
    assert len(a) == len(b) > 0, f"{what}: {len(a)} output tensors, expected {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        diff = (x - y).abs().max().item() if x.shape == y.shape else math.nan
        assert x.shape == y.shape and torch.equal(x, y), (
            f"{what}: output {i} is not bit-exact (max abs diff {diff})"
        )


def _seeded(seed: int, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with the global RNG seeded: dropout and stochastic depth repeat."""
    torch.manual_seed(seed)
    return fn(*args)


def _read_masks(wrapper: SelfDamagingWrapper) -> dict[str, Tensor]:
    """The masks as the checkpoint holds them: ``state_dict`` keys ``masks.<param>``."""
    prefix = "masks."
    return {k[len(prefix) :]: v for k, v in wrapper.state_dict().items() if k.startswith(prefix)}


def _check_masks_match(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    params = dict(model.named_parameters())
    assert masks, "the wrapper holds no masks"
    for name, mask in masks.items():
        assert name in params, f"mask {name!r} names no parameter of the model"
        assert mask.dtype == torch.bool, f"mask {name!r} has dtype {mask.dtype}, expected bool"
        assert mask.shape == params[name].shape, (
            f"mask {name!r} has shape {tuple(mask.shape)}, parameter {tuple(params[name].shape)}"
        )


def _check_twin(
    wrapper: SelfDamagingWrapper, x: Tensor, dense_out: Any, masks: Mapping[str, Tensor]
) -> None:
    """Twin finite and different; dense state untouched; masked entries get zero gradient."""
    model = wrapper.model
    before = _state(model)
    model.zero_grad(set_to_none=True)
    twin = _seeded(1, wrapper.damaged, x)
    _assert_same_state(_state(model), before, "the twin pass changed the dense model's state")
    outs = _tensors(twin)
    assert outs, "the twin returned no tensor"
    bad = [i for i, t in enumerate(outs) if not torch.isfinite(t).all()]
    assert not bad, f"twin outputs {bad} hold NaN or infinite values"
    dense = _tensors(dense_out)
    assert any(not torch.equal(t, d) for t, d in zip(outs, dense)), (
        "the twin's output equals the dense output: the damage has no effect"
    )
    # Backprop through the twin only: the gradient of a masked weight entry must be 0. A
    # fixed random projection of the outputs, not their sum: BatchNorm in training mode
    # makes the sum of its outputs over the batch independent of its inputs.
    generator = torch.Generator().manual_seed(2)
    loss = sum((t.float() * torch.randn(t.shape, generator=generator)).sum() for t in outs)
    assert isinstance(loss, Tensor)
    loss.backward()
    params = dict(model.named_parameters())
    missing, leaks, live = [], [], 0
    for name, mask in masks.items():
        grad = params[name].grad
        if grad is None:
            missing.append(name)
            continue
        leak = int(torch.count_nonzero(grad[~mask]))
        if leak:
            leaks.append(f"{name} ({leak} entries)")
        live += int(torch.count_nonzero(grad[mask]))
    assert not leaks, f"masked entries received a twin gradient: {leaks[:5]}"
    assert len(missing) < len(masks), "no masked parameter received a twin gradient"
    if live == 0:
        kept = {name: mask.float().mean().item() for name, mask in masks.items()}
        dead = [name for name, k in kept.items() if k == 0.0]
        few = [name for name, k in kept.items() if 0.0 < k < 0.01]
        raise AssertionError(
            f"the twin gradient is zero on every kept entry: the twin's output does not "
            f"depend on its input. Of {len(masks)} masked parameters {len(dead)} are "
            f"entirely masked (e.g. {dead[:2]}) and {len(few)} keep under 1 % "
            f"(e.g. {few[:2]})"
        )
    model.zero_grad(set_to_none=True)


# ------------------------------------------------------------------------------ checks


def check_weight_damage(
    model: nn.Module,
    x: Tensor,
    *,
    prunable: tuple[type[nn.Module], ...] = (nn.Conv2d,),
    prune_ratio: float = WEIGHT_RATIO,
) -> None:
    """Weight damage on ``model``: every invariant of the twin, against own references.

    - wrapping changes nothing, the dense output and state after a training step are
      bit-exact with a ``deepcopy`` of the bare model;
    - there is one ``bool`` mask per ``prunable`` weight its layer uses as is, and the
      fraction of ``False`` entries over all of them is ``prune_ratio`` to within rounding;
    - the twin's output is finite and differs from the dense one, a twin pass leaves the
      dense state (BatchNorm statistics included) untouched, and masked entries receive
      exactly zero gradient from it.

    Raises:
        AssertionError: Naming the broken invariant.
    """
    model.train()
    reference = copy.deepcopy(model)
    wrapper = make_wrapper(model, prune_ratio, prunable=prunable)
    _assert_same_state(_state(model), _state(reference), "wrapping changed the model")
    dense = _seeded(1, wrapper, x)
    _assert_same_output(dense, _seeded(1, reference, x), "dense output vs the bare model")
    _assert_same_state(_state(model), _state(reference), "dense state after a training pass")

    masks = _read_masks(wrapper)
    _check_masks_match(model, masks)
    expected = {  # weights their layer transforms (StdConv2d, weight norm) are left out
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, prunable)
        and isinstance(getattr(module, "weight", None), nn.Parameter)
        and weight_transform(module) is None
    }
    assert set(masks) == expected, (
        f"masked weights differ from the prunable ones: missing "
        f"{sorted(expected - set(masks))[:5]}, extra {sorted(set(masks) - expected)[:5]}"
    )
    total = sum(m.numel() for m in masks.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    realised = pruned / total
    assert abs(realised - prune_ratio) <= 1.0 / total + 1e-12, (
        f"realised sparsity {realised:.6f} over {total} prunable weights, asked {prune_ratio}"
    )
    assert abs(wrapper.sparsity - realised) < 1e-9, (
        f"wrapper.sparsity={wrapper.sparsity} but the masks say {realised}"
    )
    _check_twin(wrapper, x, dense, masks)


def _channel_structure(mask: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Dead output channels of a weight mask, and masked entries in no dead channel.

    A weight of shape ``(out, in / groups, ...)`` (a convolution with ``groups``, or a
    linear layer with ``groups=1``): output channel ``o`` is dead when its whole row is
    masked, input channel ``i`` of group ``g`` when its column within the group's rows is.

    Returns:
        ``(dead outputs of shape (out,), stray entries of the mask's shape)``.
    """
    m = mask.reshape(groups, mask.shape[0] // groups, mask.shape[1], -1)
    out_dead = ~m.any(dim=3).any(dim=2)  # (groups, out / groups)
    in_dead = ~m.any(dim=3).any(dim=1)  # (groups, in / groups)
    stray = ~m & ~out_dead[:, :, None, None] & ~in_dead[:, None, :, None]
    return out_dead.reshape(-1), stray.reshape(mask.shape)


def check_channel_damage(
    model: nn.Module,
    x: Tensor,
    *,
    prunable: tuple[type[nn.Module], ...] = (nn.Conv2d,),
    prune_ratio: float = CHANNEL_RATIO,
) -> None:
    """Channel damage on ``model``: it constructs, damages whole channels, leaves the model be.

    - construction (tracing) changes neither the model's state nor its train/eval modes,
      and the dense output afterwards is bit-exact with a ``deepcopy`` of the bare model;
    - every masked-out weight entry lies in a whole masked output or input channel;
    - the fraction of the masked layers' output channels that are dead, read from the
      masks, and ``wrapper.channel_sparsity`` are both about ``prune_ratio``;
    - the twin invariants of :func:`check_weight_damage`.

    Raises:
        AssertionError: Naming the broken invariant.
        ValueError: Whatever the wrapper raises when it cannot plan the model.
    """
    model.train()
    reference = copy.deepcopy(model)
    modes = [m.training for m in model.modules()]
    wrapper = make_wrapper(model, prune_ratio, prunable=prunable, channel=True, example_inputs=x)
    _assert_same_state(_state(model), _state(reference), "building the plan changed the model")
    assert [m.training for m in model.modules()] == modes, "building the plan changed modes"
    dense = _seeded(1, wrapper, x)
    _assert_same_output(dense, _seeded(1, reference, x), "dense output vs the bare model")
    _assert_same_state(_state(model), _state(reference), "dense state after a training pass")

    masks = _read_masks(wrapper)
    _check_masks_match(model, masks)
    rows = dead = 0
    for name, mask in masks.items():
        if mask.dim() < 2:
            continue
        module = model.get_submodule(name.rpartition(".")[0])
        out_dead, stray = _channel_structure(mask, getattr(module, "groups", 1))
        assert not stray.any(), (
            f"{name}: {int(stray.sum())} masked entries outside any whole masked channel"
        )
        rows += out_dead.numel()
        dead += int(out_dead.sum())
    assert dead > 0, "no output channel is masked in any layer"
    realised = dead / rows
    # Per layer, coupled channels count once per layer: close to, not exactly, the ratio.
    assert abs(realised - prune_ratio) < 0.2, (
        f"{dead} of {rows} output channels of the masked layers are dead ({realised:.3f}), "
        f"asked {prune_ratio}"
    )
    assert abs(wrapper.channel_sparsity - prune_ratio) < 0.02, (
        f"wrapper.channel_sparsity={wrapper.channel_sparsity:.4f}, asked {prune_ratio}"
    )
    _check_twin(wrapper, x, dense, masks)


# ------------------------------------------------------------------------------- cases


@dataclass
class Outcome:
    """What one zoo case did: ``ok``, or the error it raised, with its cost."""

    model: str
    kind: str
    ok: bool
    error: str = ""
    message: str = ""
    seconds: float = 0.0
    peak_rss_mib: float = 0.0

    def matches(self, error: str, fragment: str) -> bool:
        return not self.ok and self.error == error and fragment in self.message


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _where(error: BaseException) -> str:
    """For an error without a message (``MemoryError``): the innermost source line raising it."""
    frames = [
        f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<")
    ]
    if not frames:
        return type(error).__name__
    path = Path(frames[-1].filename)
    return f"{type(error).__name__} in {path.parent.name}/{path.name}:{frames[-1].lineno}"


def run_case(name: str, kind: str) -> Outcome:
    """Builds zoo model ``name`` (seed 0) and runs the ``kind`` check on it, in-process."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got kind={kind!r}")
    zoo: ZooModel = zoo_model(name)
    start = time.perf_counter()
    try:
        torch.manual_seed(0)
        model = zoo.build()
        x = zoo.inputs()
        if kind == "weight":
            check_weight_damage(model, x, prunable=zoo.prunable)
        else:
            check_channel_damage(model, x, prunable=zoo.channel_prunable)
        outcome = Outcome(name, kind, ok=True)
    except Exception as error:  # recorded, and compared with the expected failures
        message = str(error) or _where(error)
        outcome = Outcome(name, kind, ok=False, error=type(error).__name__, message=message)
    outcome.seconds = time.perf_counter() - start
    outcome.peak_rss_mib = _peak_rss_mib()
    return outcome


_CHILD = """
import json, resource, sys
limit = int(sys.argv[3])
if limit > 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.path.insert(0, sys.argv[4])
from zoo.checks import run_case
from dataclasses import asdict
print("ZOO-OUTCOME " + json.dumps(asdict(run_case(sys.argv[1], sys.argv[2]))), flush=True)
"""


def run_case_isolated(
    name: str, kind: str, *, memory_gib: float = 8.0, timeout_s: float = 900.0
) -> Outcome:
    """:func:`run_case` in a child process under ``RLIMIT_AS`` and a timeout.

    The address-space limit includes what importing torch maps (about 4 GiB), so
    ``memory_gib`` is an upper bound on what a case may use, not its resident size. A child
    that times out is reported as error ``"Timeout"``, one killed by a signal as
    ``"Killed"``; seconds and peak memory come from the child itself where it reports.
    """
    tests_dir = str(Path(__file__).resolve().parents[1])
    limit = int(memory_gib * 2**30)
    cmd = [sys.executable, "-c", _CHILD, name, kind, str(limit), tests_dir]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        seconds = time.perf_counter() - start
        return Outcome(name, kind, False, "Timeout", f"no result after {timeout_s:.0f} s", seconds)
    seconds = time.perf_counter() - start
    for line in done.stdout.splitlines():
        if line.startswith("ZOO-OUTCOME "):
            return Outcome(**json.loads(line[len("ZOO-OUTCOME ") :]))
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    if done.returncode < 0:
        return Outcome(
            name, kind, False, "Killed", f"signal {-done.returncode}: {' | '.join(tail)}", seconds
        )
    return Outcome(
        name, kind, False, "ChildError", f"exit {done.returncode}: {' | '.join(tail)}", seconds
    )
