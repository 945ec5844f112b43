"""Adapters driven by a temperature schedule: ``temperature=CosineTemperature()``.

The reference temperatures are the authors' formula, written out here by hand from
``train_simCLR.py``, ``train()`` of github.com/Annusha/temperature_schedules (commit
``3ac1db6``): ``min_tau + 0.5 * (max_tau - min_tau) * (1 + cos(pi * epoch / t_max))``,
with their README's ``--temperature_min 0.1 --temperature_max 1.0 --t_max 200``
(``CosineTemperature``'s ``period_epochs`` is ``2 * t_max``). The reference loss at an
epoch is the same adapter, seeded alike, built with that float as its temperature.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from lightly.loss import BarlowTwinsLoss, DCLLoss, NTXentLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import nn

from selfdamage.adapters import (
    ADAPTERS,
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
    TwoViewAdapter,
    VICRegAdapter,
)
from selfdamage.longtail.temperature import ConstantTemperature, CosineTemperature

from .helpers import FEATURES, tiny_backbone, views

SCHEDULED = [SimCLRAdapter, DCLAdapter, DCLWAdapter, MoCoAdapter, NNCLRAdapter]
WITHOUT = [BYOLAdapter, SimSiamAdapter, BarlowTwinsAdapter, VICRegAdapter, TiCoAdapter, DINOAdapter]
Adapter = Any


def authors_tau(epoch: int, tau_min: float = 0.1, tau_max: float = 1.0, t_max: int = 200) -> float:
    """``train_simCLR.py``, ``train()``: the temperature of epoch ``epoch``."""
    return tau_min + 0.5 * (tau_max - tau_min) * (1 + math.cos(math.pi * epoch / t_max))


def build(cls: Adapter, **kwargs: Any) -> nn.Module:
    torch.manual_seed(0)  # same weights and memory banks for every build
    return cls(tiny_backbone(), FEATURES, 0.5, **kwargs)


def stepped(cls: Adapter, epochs: int, **kwargs: Any) -> nn.Module:
    model = build(cls, temperature=CosineTemperature(), **kwargs)
    for _ in range(epochs):
        model.temperature_schedule.step()
    return model


@pytest.mark.parametrize("cls", SCHEDULED)
class TestScheduledAdapters:
    @pytest.mark.parametrize("epoch", [0, 1, 100, 200, 300])
    def test_loss_at_an_epoch_is_the_loss_at_the_authors_temperature(
        self, cls: Adapter, epoch: int
    ) -> None:
        x0, x1 = views()
        scheduled = stepped(cls, epoch)
        reference = build(cls, temperature=authors_tau(epoch))
        loss = scheduled(x0, x1)
        assert scheduled.loss.temperature == pytest.approx(authors_tau(epoch), rel=1e-12)
        # The temperatures may differ in the last bit (cos(2 pi e / 400) vs cos(pi e / 200)).
        torch.testing.assert_close(loss, reference(x0, x1), rtol=1e-6, atol=0.0)

    def test_the_temperature_is_set_at_the_start_of_every_forward(self, cls: Adapter) -> None:
        x0, x1 = views()
        model = stepped(cls, 0)
        model.loss.temperature = 0.7  # overwritten by the schedule's value, 1.0
        loss = model(x0, x1)
        assert model.loss.temperature == 1.0
        torch.testing.assert_close(loss, build(cls, temperature=1.0)(x0, x1), rtol=0, atol=0)

    def test_schedule_is_a_submodule_in_the_state_dict(self, cls: Adapter) -> None:
        plain = list(build(cls).state_dict())
        model = stepped(cls, 3)
        assert isinstance(model.temperature_schedule, CosineTemperature)
        assert dict(model.named_children())["temperature_schedule"] is model.temperature_schedule
        keys = list(model.state_dict())  # NNCLR registers its support set after the schedule
        assert sorted(keys) == sorted([*plain, "temperature_schedule._extra_state"])
        assert model.state_dict()["temperature_schedule._extra_state"]["steps"] == 3

    def test_state_dict_round_trip_resumes_exactly(self, cls: Adapter) -> None:
        x0, x1 = views()
        original = stepped(cls, 150)
        state = copy.deepcopy(original.state_dict())
        torch.manual_seed(1)  # other initial weights: everything must come from the state
        resumed = cls(tiny_backbone(), FEATURES, 0.5, temperature=CosineTemperature())
        resumed.load_state_dict(state)
        assert resumed.temperature_schedule.epoch == 150
        assert torch.equal(resumed(x0, x1), original(x0, x1))
        original.temperature_schedule.step()
        resumed.temperature_schedule.step()
        assert torch.equal(resumed(x0, x1), original(x0, x1))

    def test_a_constant_schedule_gives_the_float_numbers_bit_for_bit(self, cls: Adapter) -> None:
        x0, x1 = views()
        scheduled = build(cls, temperature=ConstantTemperature(0.3))
        assert torch.equal(scheduled(x0, x1), build(cls, temperature=0.3)(x0, x1))

    def test_schedule_with_a_loss_drives_that_loss(self, cls: Adapter) -> None:
        # Under DDP the loss must be given (gather_distributed=True); the schedule still fits.
        bank = (4096, 128) if cls is MoCoAdapter else 0
        loss = NTXentLoss(temperature=0.5, memory_bank_size=bank)
        model = stepped(cls, 200, loss=loss)
        assert model.loss is loss and loss.temperature == 1.0  # set at construction, epoch 0
        model(*views())
        assert loss.temperature == pytest.approx(0.1, rel=1e-12)

    def test_float_with_a_loss_is_still_refused(self, cls: Adapter) -> None:
        with pytest.raises(ValueError, match=r"temperature=0\.3 configures the default loss"):
            build(cls, loss=NTXentLoss(), temperature=0.3)


def test_no_adapter_has_a_schedule_key_without_one() -> None:
    for cls in ADAPTERS.values():
        model = build(cls)
        assert model.temperature_schedule is None, cls.__name__
        assert "temperature_schedule" not in dict(model.named_children()), cls.__name__
        assert not [key for key in model.state_dict() if "temperature" in key], cls.__name__


def test_two_view_adapter_takes_a_schedule_with_a_temperature_loss() -> None:
    x0, x1 = views()
    model = build(
        TwoViewAdapter,
        head=nn.Linear(FEATURES, 8),
        loss=DCLLoss(temperature=0.5),
        temperature=CosineTemperature(),
    )
    model.temperature_schedule.step()
    model(x0, x1)
    assert model.loss.temperature == pytest.approx(authors_tau(1), rel=1e-12)


@pytest.mark.parametrize("cls", WITHOUT)
def test_adapters_without_a_temperature_reject_a_schedule(cls: Adapter) -> None:
    with pytest.raises(TypeError, match=f"but {cls.__name__} has no temperature") as error:
        build(cls, temperature=CosineTemperature())
    assert "SimCLRAdapter, DCLAdapter, DCLWAdapter, MoCoAdapter and NNCLRAdapter" in str(
        error.value
    )


def test_two_view_adapter_with_a_loss_without_temperature_rejects_a_schedule() -> None:
    with pytest.raises(TypeError, match=r"TwoViewAdapter has no temperature.*BarlowTwinsLoss"):
        build(
            TwoViewAdapter,
            head=BarlowTwinsProjectionHead(FEATURES, 32, 32),
            loss=BarlowTwinsLoss(),
            temperature=CosineTemperature(),
        )


def test_a_float_on_an_adapter_without_temperature_is_still_an_unknown_keyword() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'temperature'"):
        build(BYOLAdapter, temperature=0.2)
