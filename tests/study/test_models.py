from __future__ import annotations

from typing import Any

import pytest
import torch
from lightly.models.modules import SimCLRProjectionHead

from selfdamage.adapters import (
    ADAPTERS,
    BarlowTwinsAdapter,
    BYOLAdapter,
    DCLAdapter,
    DCLWAdapter,
    DINOAdapter,
    MoCoAdapter,
    NNCLRAdapter,
    SDCLRProjectionHead,
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


class TestHead:
    def build(self, method: str, head: str, *, sdclr: bool, damage: str = "weight") -> Any:
        temperature = METHOD_TABLE[method].defaults["temperature"]
        return build_model(method, "resnet18-cifar", 2, (1, 16, 16), seed=0, sdclr=sdclr,
                           damage=damage, prune_ratio=0.5, temperature=temperature,
                           head=head)  # fmt: skip

    def test_default_is_the_methods_own(self) -> None:
        assert type(self.build("simclr", "lightly", sdclr=True).wrapper.model.head) is (
            SimCLRProjectionHead
        )

    @pytest.mark.parametrize(
        "method", [name for name, spec in METHOD_TABLE.items() if spec.reference_head]
    )
    @pytest.mark.parametrize("sdclr", [False, True])
    def test_reference_head_for_baseline_and_sdclr(self, method: str, sdclr: bool) -> None:
        model = self.build(method, "reference", sdclr=sdclr)
        head = model.wrapper.model.head
        assert isinstance(head, SDCLRProjectionHead)
        linears = [m for m in head.layers if isinstance(m, torch.nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [(16, 16), (16, 16), (16, 128)]
        twins = {name for name, _ in model.wrapper.twin_norms.named_modules()}
        assert ({"head.layers.1", "head.layers.4", "head.layers.7"} <= twins) is sdclr

    @pytest.mark.parametrize("damage", ["weight", "channel"])
    def test_reference_head_same_initial_weights(self, damage: str) -> None:
        a = self.build("simclr", "reference", sdclr=False).wrapper.model.state_dict()
        b = self.build("simclr", "reference", sdclr=True, damage=damage).wrapper.model.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(b[key], value) for key, value in a.items())

    def test_method_without_reference_head(self) -> None:
        with pytest.raises(ValueError, match="head='reference' does not apply to method='byol'"):
            self.build("byol", "reference", sdclr=True)
