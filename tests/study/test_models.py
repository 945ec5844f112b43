from __future__ import annotations

import pytest
import torch

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
    VICRegAdapter,
)
from selfdamage.study.models import METHOD_TABLE, METHODS, build_model


@pytest.mark.parametrize(
    ("method", "cls"),
    [
        ("simclr", SimCLRAdapter),
        ("moco", MoCoAdapter),
        ("byol", BYOLAdapter),
        ("barlowtwins", BarlowTwinsAdapter),
        ("vicreg", VICRegAdapter),
        ("dcl", DCLAdapter),
        ("dclw", DCLWAdapter),
        ("simsiam", SimSiamAdapter),
        ("dino", DINOAdapter),
        ("nnclr", NNCLRAdapter),
        ("tico", TiCoAdapter),
    ],
)
def test_table_builds_each_method(method: str, cls: type) -> None:
    temperature = METHOD_TABLE[method].defaults["temperature"]
    model = build_model(method, "resnet18-cifar", 2, (1, 16, 16), seed=0, sdclr=False,
                        damage="weight", prune_ratio=0.9, temperature=temperature)  # fmt: skip
    assert type(model) is cls and model.baseline


def test_methods_are_the_table_and_registered_adapters() -> None:
    assert tuple(METHOD_TABLE) == METHODS
    assert set(METHODS) <= set(ADAPTERS)


@pytest.mark.parametrize("method", ["simclr", "byol"])
@pytest.mark.parametrize("damage", ["weight", "channel"])
def test_same_seed_same_initial_weights_for_baseline_and_sdclr(method: str, damage: str) -> None:
    # Every trained weight: backbone, head, predictor (BYOL). The baseline's twin is weight-
    # damaged whatever --damage says, so the channel variant is compared with it.
    temperature = 0.2 if method == "simclr" else None
    options = {"seed": 3, "prune_ratio": 0.5, "temperature": temperature}
    a = build_model(method, "resnet18-cifar", 2, (1, 16, 16), sdclr=False, damage="weight",
                    **options)  # type: ignore[arg-type]  # fmt: skip
    b = build_model(method, "resnet18-cifar", 2, (1, 16, 16), sdclr=True, damage=damage,
                    **options)  # type: ignore[arg-type]  # fmt: skip
    wa, wb = a.wrapper.model.state_dict(), b.wrapper.model.state_dict()
    assert wa.keys() == wb.keys()
    for key, value in wa.items():
        assert torch.equal(wb[key], value), key


def test_nnclr_support_set_fits_the_study_data() -> None:
    # The default training set: n_max=1500, imbalance ratio 100, 10 classes.
    smallest = sum(int(1500 * 100 ** (-i / 9)) for i in range(10))
    model = build_model("nnclr", "resnet18-cifar", 2, (1, 16, 16), seed=0, sdclr=True,
                        damage="weight", prune_ratio=0.9, temperature=0.2)  # fmt: skip
    assert isinstance(model, NNCLRAdapter)
    assert model.memory_bank.size[0] <= smallest / 3
    assert model.loss.temperature == 0.2  # the study's temperature reaches the loss
