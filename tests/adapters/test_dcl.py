"""DCLAdapter and DCLWAdapter's defaults and options: lightly's examples/pytorch/dcl.py.

Their steps against lightly's example and a hand-built twin: tests/adapters/test_two_view.py.
"""

from __future__ import annotations

import pytest
from lightly.loss import DCLLoss, DCLWLoss
from lightly.loss.dcl_loss import negative_mises_fisher_weights
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from selfdamage.adapters import DCLAdapter, DCLWAdapter

from .helpers import FEATURES, linear_sizes, tiny_backbone


@pytest.mark.parametrize(("cls", "loss_type"), [(DCLAdapter, DCLLoss), (DCLWAdapter, DCLWLoss)])
class TestDCLAdapters:
    def test_default_head_and_loss_are_the_examples(
        self, cls: type[DCLAdapter], loss_type: type[nn.Module]
    ) -> None:
        adapter = cls(tiny_backbone(), FEATURES)
        head = adapter.wrapper.model.head
        assert isinstance(head, SimCLRProjectionHead)
        assert linear_sizes(head) == [(FEATURES, FEATURES), (FEATURES, 128)]
        assert type(adapter.loss) is loss_type
        assert adapter.loss.temperature == 0.1 and not adapter.loss.gather_distributed

    def test_temperature_sets_the_default_loss(
        self, cls: type[DCLAdapter], loss_type: type[nn.Module]
    ) -> None:
        adapter = cls(tiny_backbone(), FEATURES, temperature=0.5)
        assert type(adapter.loss) is loss_type and adapter.loss.temperature == 0.5

    def test_user_head_and_loss_are_used_as_given(
        self, cls: type[DCLAdapter], loss_type: type[nn.Module]
    ) -> None:
        head, loss = nn.Linear(FEATURES, 4), loss_type(temperature=0.2)
        adapter = cls(tiny_backbone(), FEATURES, head=head, loss=loss)
        assert adapter.wrapper.model.head is head and adapter.loss is loss

    def test_temperature_with_loss_is_rejected(
        self, cls: type[DCLAdapter], loss_type: type[nn.Module]
    ) -> None:
        with pytest.raises(ValueError, match=r"temperature=0\.2 configures the default loss"):
            cls(tiny_backbone(), FEATURES, loss=loss_type(), temperature=0.2)

    @pytest.mark.parametrize(
        ("temperature", "error", "message"),
        [
            (0.0, ValueError, r"temperature must be > 0\.0, got temperature=0\.0\. It divides"),
            ("0.1", TypeError, r"temperature must be a float, got temperature='0\.1'"),
        ],
    )
    def test_bad_temperature_is_rejected(
        self,
        cls: type[DCLAdapter],
        loss_type: type[nn.Module],
        temperature: object,
        error: type[Exception],
        message: str,
    ) -> None:
        with pytest.raises(error, match=message):
            cls(tiny_backbone(), FEATURES, temperature=temperature)  # type: ignore[arg-type]


def test_dclw_default_weighting_is_lightlys_sigma() -> None:
    weight_fn = DCLWAdapter(tiny_backbone(), FEATURES).loss.weight_fn
    assert weight_fn.func is negative_mises_fisher_weights and weight_fn.keywords == {"sigma": 0.5}
    assert DCLAdapter(tiny_backbone(), FEATURES).loss.weight_fn is None
