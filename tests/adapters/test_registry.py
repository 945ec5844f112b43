"""ADAPTERS: method name -> adapter class, and register_adapter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
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
    VICRegAdapter,
    register_adapter,
)


@pytest.fixture
def registry() -> Iterator[None]:
    before = dict(ADAPTERS)
    yield
    ADAPTERS.clear()
    ADAPTERS.update(before)


class TestRegistry:
    def test_the_methods(self) -> None:
        assert {
            "simclr": SimCLRAdapter,
            "moco": MoCoAdapter,
            "byol": BYOLAdapter,
            "barlowtwins": BarlowTwinsAdapter,
            "vicreg": VICRegAdapter,
            "dcl": DCLAdapter,
            "dclw": DCLWAdapter,
            "simsiam": SimSiamAdapter,
            "dino": DINOAdapter,
            "nnclr": NNCLRAdapter,
            "tico": TiCoAdapter,
        } == ADAPTERS

    def test_register(self, registry: None) -> None:
        @register_adapter("simclr2")
        class SimCLR2(SimCLRAdapter):
            pass

        assert ADAPTERS["simclr2"] is SimCLR2

    def test_name_taken(self, registry: None) -> None:
        with pytest.raises(ValueError, match="name must be a new method name, got name='moco'"):
            register_adapter("moco")

    def test_not_an_adapter(self, registry: None) -> None:
        with pytest.raises(TypeError, match="SelfDamagingAdapter subclass"):
            register_adapter("linear")(nn.Linear)  # type: ignore[type-var]
