"""Each adapter's keywords: what its signature shows, what it takes, what it refuses."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
from lightly.loss import NTXentLoss
from torch import nn

from selfdamage.adapters import ADAPTERS, SimCLRAdapter, TwoViewAdapter
from selfdamage.adapters.method_options import MethodOptions
from selfdamage.adapters.wrapper_options import WrapperOptions

from .helpers import FEATURES, tiny_backbone

# Each method's keywords after head and loss, with their defaults: the 0.2 constructors'
# keyword lists, written out here as the contract (order aside).
KEYWORDS: dict[str, dict[str, Any]] = {
    "simclr": {"temperature": None},
    "dcl": {"temperature": None},
    "dclw": {"temperature": None},
    "moco": {"temperature": None, "memory_bank_size": None},
    "nnclr": {
        "predictor": None,
        "temperature": None,
        "memory_bank_size": 4096,
        "gather_distributed": False,
    },
    "tico": {"beta": None, "rho": None},
    "byol": {"predictor": None},
    "simsiam": {"predictor": None},
    "barlowtwins": {},
    "vicreg": {},
    "dino": {},
}
# A valid value for each keyword, to show that the constructor takes it.
VALUES = {
    "predictor": None,
    "temperature": 0.3,
    "memory_bank_size": 16,
    "gather_distributed": False,
    "beta": 0.8,
    "rho": 4.0,
}


def test_every_registered_method_is_listed() -> None:
    assert set(KEYWORDS) == set(ADAPTERS)


@pytest.mark.parametrize("name", sorted(KEYWORDS))
def test_signature_shows_exactly_the_methods_keywords(name: str) -> None:
    parameters = inspect.signature(ADAPTERS[name]).parameters
    assert list(parameters)[:5] == ["backbone", "feature_dim", "prune_ratio", "head", "loss"]
    assert parameters["feature_dim"].default == 512
    assert parameters["prune_ratio"].default == 0.9
    *keywords, options = list(parameters.values())[5:]
    assert {p.name: p.default for p in keywords} == KEYWORDS[name]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in keywords)
    assert options.kind is inspect.Parameter.VAR_KEYWORD
    assert options.annotation == "Unpack[WrapperOptions]"


@pytest.mark.parametrize("name", sorted(KEYWORDS))
def test_the_constructor_takes_every_keyword_the_signature_shows(name: str) -> None:
    given = {keyword: VALUES[keyword] for keyword in KEYWORDS[name]}
    model = ADAPTERS[name](tiny_backbone(), FEATURES, 0.5, **given)
    if "temperature" in given:
        assert model.loss.temperature == 0.3
    if name == "nnclr":
        assert model.memory_bank.size == (16, 128)


@pytest.mark.parametrize("name", sorted(KEYWORDS))
def test_a_keyword_of_another_method_is_refused_by_name(name: str) -> None:
    foreign = sorted(set(VALUES) - set(KEYWORDS[name]))
    for keyword in foreign:
        if keyword == "temperature":
            continue  # taken as a schedule by any adapter; a float is tested elsewhere
        message = f"{ADAPTERS[name].__name__}.__init__() got an unexpected keyword argument"
        with pytest.raises(TypeError, match=re.escape(f"{message} {keyword!r}")):
            ADAPTERS[name](tiny_backbone(), FEATURES, 0.5, **{keyword: VALUES[keyword]})


def test_type_checkers_know_every_keyword_and_its_declared_type() -> None:
    shown = {keyword for keywords in KEYWORDS.values() for keyword in keywords}
    declared = set(MethodOptions.__annotations__) - set(WrapperOptions.__annotations__)
    assert declared == shown
    temperature = inspect.signature(SimCLRAdapter).parameters["temperature"]
    assert temperature.annotation == "float | TemperatureSchedule | None"


def test_a_keyword_of_a_user_default_loss_is_taken_and_shown() -> None:
    class Hot(TwoViewAdapter):
        default_head = staticmethod(lambda feature_dim: nn.Linear(feature_dim, 8))

        @staticmethod
        def default_loss(head: nn.Module, warmth: float = 0.7) -> nn.Module:
            return NTXentLoss(temperature=warmth)

    assert "warmth" in inspect.signature(Hot).parameters
    assert Hot(tiny_backbone(), FEATURES, 0.5, warmth=0.4).loss.temperature == 0.4
    with pytest.raises(ValueError, match=r"warmth=0\.4 configures the default loss"):
        Hot(tiny_backbone(), FEATURES, 0.5, loss=NTXentLoss(), warmth=0.4)


def test_a_class_with_its_own_init_shows_its_own_signature() -> None:
    class Named(SimCLRAdapter):
        def __init__(self, backbone: nn.Module, *, warmth: float = 0.7) -> None:
            self._assemble(backbone, FEATURES, 0.5, {}, head=None, loss=None, temperature=warmth)

    assert list(inspect.signature(Named).parameters) == ["backbone", "warmth"]
    assert Named(tiny_backbone(), warmth=0.25).loss.temperature == 0.25
