"""Temperature schedules, checked against the formulas of Kukleva et al.'s code.

References (github.com/Annusha/temperature_schedules, commit 3ac1db6):

- ``train_simCLR.py``, ``train()``, branch ``args.adj_tau == 'cos'``: the temperature of an
  epoch, ``min_tau + 0.5 * (max_tau - min_tau) * (1 + cos(pi * epoch / t_max))``, in
  float32 (``torch.tensor`` of a Python float), with the README's ``--temperature_min 0.1
  --temperature_max 1.0 --t_max 200``; else the constant ``--temperature`` (default 0.2).
- ``train_simCLR.py``, ``main()``: epochs run ``for epoch in range(start_epoch, epochs + 1)``
  with ``start_epoch = 1`` (``checkpoint['epoch'] + 1`` on resume).
- ``utils.py``, ``nt_xent()``: how the temperature enters the loss, both the positive and
  the negative similarities divided by it.

The expected numbers below are computed here, from those formulas, never by the module.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import (
    BarlowTwinsLoss,
    DCLLoss,
    DCLWLoss,
    DINOLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    TiCoLoss,
    VICRegLoss,
)
from torch import Tensor, nn

from selfdamage.adapters import ADAPTERS
from selfdamage.longtail.temperature import (
    ConstantTemperature,
    CosineTemperature,
    TemperatureSchedule,
    set_temperature,
    temperature_of,
)
from tests.adapters.helpers import FEATURES, tiny_backbone

SQRT_HALF = math.sqrt(2.0) / 2.0  # cos(pi / 4), by hand


def authors_tau(
    epoch: float, t_max: float = 200, tau_min: float = 0.1, tau_max: float = 1.0
) -> float:
    """train_simCLR.py, train(): the cosine branch, in float64."""
    return tau_min + 0.5 * (tau_max - tau_min) * (1.0 + math.cos(math.pi * epoch / t_max))


def authors_tau_float32(epoch: int, t_max: int = 200) -> float:
    """train_simCLR.py, train(): the cosine branch as it runs there, through a float32 tensor."""
    angle = torch.tensor(math.pi * epoch / t_max)  # float32, as torch.tensor(python float)
    return float(0.1 + 0.5 * (1.0 - 0.1) * (1 + torch.cos(angle)))


class TestCosineTemperature:
    @pytest.mark.parametrize(
        ("epoch", "by_hand"),
        [
            (0, 1.0),
            (50, 0.1 + 0.45 * (1 + SQRT_HALF)),
            (100, 0.55),
            (150, 0.1 + 0.45 * (1 - SQRT_HALF)),
            (200, 0.1),
            (250, 0.1 + 0.45 * (1 - SQRT_HALF)),
            (300, 0.55),
            (400, 1.0),
            (600, 0.1),
        ],
    )
    def test_defaults_are_the_authors_readme_settings(self, epoch: int, by_hand: float) -> None:
        schedule = CosineTemperature()
        assert schedule(epoch) == pytest.approx(by_hand, abs=1e-12)
        assert schedule(epoch) == pytest.approx(authors_tau(epoch), abs=1e-12)

    def test_each_epoch_of_two_cycles_matches_the_authors_float32_temperature(self) -> None:
        # Their value is float32: agreement to float32 resolution, 1e-6 relative.
        schedule = CosineTemperature()
        for epoch in range(801):
            assert schedule(epoch) == pytest.approx(authors_tau_float32(epoch), rel=1e-6)

    def test_other_settings_follow_the_formula_with_t_max_half_the_period(self) -> None:
        schedule = CosineTemperature(tau_min=0.2, tau_max=0.5, period_epochs=100)
        for epoch in (0, 10, 25, 50, 75, 99, 100, 137):
            expected = authors_tau(epoch, t_max=50, tau_min=0.2, tau_max=0.5)
            assert schedule(epoch) == pytest.approx(expected, abs=1e-12)

    def test_equal_bounds_give_a_constant(self) -> None:
        schedule = CosineTemperature(tau_min=0.3, tau_max=0.3)
        assert {schedule(epoch) for epoch in (0, 77, 200)} == {0.3}

    def test_step_once_per_epoch(self) -> None:
        schedule = CosineTemperature()
        for epoch in range(451):
            assert schedule.epoch == epoch
            assert schedule.value == pytest.approx(authors_tau(epoch), abs=1e-12)
            schedule.step()
        assert schedule.steps == 451

    def test_stepping_before_each_epoch_reproduces_the_authors_sequence(self) -> None:
        # main(): their epochs are numbered from 1, and train() uses that number.
        schedule = CosineTemperature()
        for their_epoch in range(1, 401):
            schedule.step()  # before the epoch
            assert schedule.value == pytest.approx(authors_tau_float32(their_epoch), rel=1e-6)

    def test_per_step_follows_the_formula_at_fractional_epochs(self) -> None:
        # Our extension: the authors' formula evaluated at steps / steps_per_epoch.
        schedule = CosineTemperature(steps_per_epoch=4)
        for _ in range(3):
            schedule.step()
        assert schedule.epoch == 0.75
        assert schedule.value == pytest.approx(authors_tau(0.75), abs=1e-12)
        for _ in range(4 * 100 - 3):
            schedule.step()
        assert schedule.epoch == 100.0
        assert schedule.value == CosineTemperature()(100)

    def test_a_fractional_epoch_argument(self) -> None:
        assert CosineTemperature()(12.5) == pytest.approx(authors_tau(12.5), abs=1e-12)

    def test_value_is_a_python_float_and_nothing_moves_to_a_device(self) -> None:
        schedule = CosineTemperature()
        assert type(schedule.value) is float
        assert list(schedule.parameters()) == [] and list(schedule.buffers()) == []


class TestConstantTemperature:
    def test_constant_at_every_epoch_like_the_authors_static_branch(self) -> None:
        schedule = ConstantTemperature(0.2)  # their --temperature default
        for _ in range(5):
            schedule.step()
        assert schedule.value == 0.2
        assert {schedule(epoch) for epoch in (0, 3.5, 1000)} == {0.2}

    def test_steps_per_epoch_changes_only_the_epoch(self) -> None:
        schedule = ConstantTemperature(0.5, steps_per_epoch=2)
        schedule.step()
        assert (schedule.epoch, schedule.value) == (0.5, 0.5)


def _stepped(schedule: TemperatureSchedule, steps: int) -> TemperatureSchedule:
    for _ in range(steps):
        schedule.step()
    return schedule


class TestState:
    def test_round_trip_and_exact_resume(self) -> None:
        def build() -> CosineTemperature:
            return CosineTemperature(0.1, 1.0, 400, steps_per_epoch=7)

        original = _stepped(build(), 123)
        resumed = build()
        resumed.load_state_dict(original.state_dict())
        assert resumed.steps == 123 and resumed.epoch == original.epoch
        for _ in range(50):
            assert resumed.value == original.value
            original.step()
            resumed.step()

    def test_inside_a_parent_module_through_torch_save(self) -> None:
        # How an adapter holds it: a submodule next to its loss.
        def parent() -> tuple[nn.Module, CosineTemperature]:
            module, schedule = nn.Module(), CosineTemperature()
            module.loss = NTXentLoss()
            module.temperature_schedule = schedule
            return module, schedule

        trained, schedule = parent()
        _stepped(schedule, 41)
        buffer = io.BytesIO()
        torch.save(trained.state_dict(), buffer)
        buffer.seek(0)
        resumed, resumed_schedule = parent()
        resumed.load_state_dict(torch.load(buffer, weights_only=True))  # strict
        assert "temperature_schedule._extra_state" in trained.state_dict()
        assert resumed_schedule.value == authors_tau(41)

    def test_pickles(self) -> None:
        schedule = _stepped(CosineTemperature(), 3)
        assert pickle.loads(pickle.dumps(schedule)).value == schedule.value

    @pytest.mark.parametrize(
        "other",
        [
            lambda: CosineTemperature(period_epochs=200),
            lambda: CosineTemperature(steps_per_epoch=10),
            lambda: ConstantTemperature(0.2),
        ],
    )
    def test_a_state_of_other_settings_is_refused(
        self, other: Callable[[], TemperatureSchedule]
    ) -> None:
        state = _stepped(CosineTemperature(), 5).state_dict()
        with pytest.raises(ValueError, match="settings of the run you resume"):
            other().load_state_dict(state)

    def test_a_foreign_state_is_refused(self) -> None:
        with pytest.raises(ValueError, match="state must be a temperature schedule's state"):
            CosineTemperature().load_state_dict({"_extra_state": {"epoch": 3}})


class TestErrors:
    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"tau_min": 0.0}, ValueError, "tau_min must be > 0.0, got tau_min=0.0"),
            ({"tau_min": -0.1}, ValueError, "tau_min must be > 0.0"),
            ({"tau_min": float("nan")}, ValueError, "tau_min must be a finite number"),
            ({"tau_min": "0.1"}, TypeError, "tau_min must be a float, got tau_min='0.1'"),
            ({"tau_max": 0.05}, ValueError, "tau_max must be >= tau_min=0.1, got tau_max=0.05"),
            ({"tau_max": float("inf")}, ValueError, "tau_max must be a finite number"),
            ({"period_epochs": 0}, ValueError, "period_epochs must be a positive int"),
            ({"period_epochs": 200.0}, TypeError, "period_epochs must be an int"),
            ({"steps_per_epoch": 0}, ValueError, "steps_per_epoch must be a positive int or None"),
            ({"steps_per_epoch": 1.5}, TypeError, "steps_per_epoch must be an int"),
        ],
    )
    def test_cosine(self, kwargs: dict[str, object], error: type[Exception], message: str) -> None:
        with pytest.raises(error, match=message):
            CosineTemperature(**kwargs)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("tau", "error"), [(0.0, ValueError), (-1.0, ValueError), (None, TypeError)]
    )
    def test_constant(self, tau: object, error: type[Exception]) -> None:
        with pytest.raises(error, match="tau must be"):
            ConstantTemperature(tau)  # type: ignore[arg-type]

    def test_negative_epoch(self) -> None:
        with pytest.raises(ValueError, match=r"epoch must be a number >= 0, got epoch=-1\.0"):
            CosineTemperature()(-1)

    def test_the_base_is_abstract(self) -> None:
        with pytest.raises(TypeError, match="abstract"):
            TemperatureSchedule()  # type: ignore[abstract]


# How the temperature enters each loss, written independently of lightly (float64).


def nt_xent(out0: Tensor, out1: Tensor, tau: float) -> Tensor:
    """utils.py, nt_xent(): -log(pos / (pos + sum of negatives)), all similarities / tau."""
    z = F.normalize(torch.cat([out0, out1]).double(), dim=1)
    n = out0.shape[0]
    exp_sim = torch.exp(z @ z.T / tau)
    pos = torch.exp((z[:n] * z[n:]).sum(1) / tau).repeat(2)
    neg = exp_sim.sum(1) - exp_sim.diagonal() - pos  # every other sample and view
    return (-torch.log(pos / (pos + neg))).mean()


def bank_info_nce(query: Tensor, key: Tensor, bank: Tensor, tau: float) -> Tensor:
    """MoCo's InfoNCE: the positive key against the memory bank's negatives, / tau."""
    q, k = F.normalize(query.double(), dim=1), F.normalize(key.double(), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ bank.double().T], 1) / tau
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def dcl(out0: Tensor, out1: Tensor, tau: float, sigma: float | None = None) -> Tensor:
    """DCL (Yeh et al. 2021): the positive leaves the denominator; DCLW weighs it by vMF."""

    def side(a: Tensor, b: Tensor) -> Tensor:
        n = a.shape[0]
        positive = (a * b).sum(1)
        weight = 1.0 if sigma is None else 2.0 - n * torch.softmax(positive / sigma, 0)
        terms = []
        for i in range(n):
            others = [j for j in range(n) if j != i]
            negatives = torch.cat([a[i] @ a[others].T, a[i] @ b[others].T]) / tau
            terms.append(torch.logsumexp(negatives, 0))
        return (-positive / tau * weight + torch.stack(terms)).mean()

    a, b = F.normalize(out0.double(), dim=1), F.normalize(out1.double(), dim=1)
    return 0.5 * (side(a, b) + side(b, a))


def _projections(seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(8, 16, generator=generator), torch.randn(8, 16, generator=generator)


class TestSetTemperature:
    @pytest.mark.parametrize(
        ("make", "reference"),
        [
            (NTXentLoss, nt_xent),  # SimCLR, NNCLR
            (DCLLoss, dcl),
            (DCLWLoss, lambda a, b, tau: dcl(a, b, tau, sigma=0.5)),
        ],
        ids=["NTXentLoss", "DCLLoss", "DCLWLoss"],
    )
    @pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # lightly's DCLW
    def test_the_next_call_uses_the_new_temperature(
        self, make: Callable[[], nn.Module], reference: Callable[[Tensor, Tensor, float], Tensor]
    ) -> None:
        loss, (out0, out1) = make(), _projections()
        values = {}
        for tau in (0.5, 0.1, 1.0, 0.5):  # back and forth: nothing is cached
            set_temperature(loss, tau)
            values[tau] = float(loss(out0, out1))
            assert values[tau] == pytest.approx(float(reference(out0, out1, tau)), rel=1e-5)
        assert len(set(values.values())) == 3

    def test_moco_memory_bank_loss(self) -> None:
        loss, (query, key) = NTXentLoss(memory_bank_size=(32, 16)), _projections(1)
        bank = loss.memory_bank.bank.clone()  # inputs without grad: the bank is not updated
        for tau in (0.2, 0.07, 1.0):
            set_temperature(loss, tau)
            expected = bank_info_nce(query, key, bank, tau)
            assert float(loss(query, key)) == pytest.approx(float(expected), rel=1e-5)

    def test_sets_the_attribute_and_temperature_of_reads_it(self) -> None:
        loss = DCLLoss(temperature=0.1)
        set_temperature(loss, CosineTemperature()(50))
        assert temperature_of(loss) == loss.temperature == pytest.approx(authors_tau(50))

    @pytest.mark.parametrize(
        "loss",
        [
            BarlowTwinsLoss(),
            NegativeCosineSimilarity(),  # BYOL, SimSiam
            VICRegLoss(),
            TiCoLoss(),
            DINOLoss(output_dim=8),
        ],
        ids=lambda loss: type(loss).__name__,
    )
    def test_a_loss_without_a_temperature_is_refused(self, loss: nn.Module) -> None:
        message = f"loss must have a float temperature, got a {type(loss).__name__} without one"
        with pytest.raises(TypeError, match=message):
            set_temperature(loss, 0.2)
        with pytest.raises(TypeError, match=message):
            temperature_of(loss)

    def test_a_tensor_temperature_is_refused(self) -> None:
        loss = nn.Module()
        loss.temperature = nn.Parameter(torch.tensor(0.1))
        with pytest.raises(TypeError, match="only a number can be scheduled"):
            set_temperature(loss, 0.2)

    @pytest.mark.parametrize(
        ("temperature", "error"),
        [(0.0, ValueError), (-0.5, ValueError), (True, TypeError), ("0.2", TypeError)],
    )
    def test_a_bad_temperature_is_refused(self, temperature: object, error: type) -> None:
        loss = NTXentLoss()
        with pytest.raises(error, match="temperature must be"):
            set_temperature(loss, temperature)  # type: ignore[arg-type]
        assert loss.temperature == 0.5

    def test_not_a_module(self) -> None:
        with pytest.raises(TypeError, match=r"loss must be a torch\.nn\.Module"):
            temperature_of(0.2)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:the twin masks only")
def test_which_adapters_have_a_temperature() -> None:
    """The table the adapters' wiring follows: a schedule for these, an error for the rest."""
    with_temperature = {"simclr", "moco", "nnclr", "dcl", "dclw"}
    assert with_temperature < set(ADAPTERS)
    for name, adapter_class in ADAPTERS.items():
        adapter = adapter_class(tiny_backbone(), FEATURES, 0.5)
        if name in with_temperature:
            assert temperature_of(adapter.loss) > 0
        else:
            with pytest.raises(TypeError, match="loss must have a float temperature"):
                temperature_of(adapter.loss)
