"""BarlowTwinsAdapter's defaults: lightly's examples/pytorch/barlowtwins.py.

Its steps against lightly's example and a hand-built twin: tests/adapters/test_two_view.py.
"""

from __future__ import annotations

import pytest
from lightly.loss import BarlowTwinsLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import nn

from selfdamage.adapters import BarlowTwinsAdapter

from .helpers import FEATURES, linear_sizes, tiny_backbone


class TestBarlowTwinsAdapter:
    def test_default_head_and_loss_are_the_examples(self) -> None:
        adapter = BarlowTwinsAdapter(tiny_backbone(), FEATURES)
        head = adapter.wrapper.model.head
        assert isinstance(head, BarlowTwinsProjectionHead)
        assert linear_sizes(head) == [(FEATURES, 2048), (2048, 2048), (2048, 2048)]
        assert sum(isinstance(m, nn.BatchNorm1d) for m in head.modules()) == 2
        assert isinstance(adapter.loss, BarlowTwinsLoss)
        assert adapter.loss.lambda_param == 5e-3 and not adapter.loss.gather_distributed

    def test_user_head_and_loss_are_used_as_given(self) -> None:
        head, loss = nn.Linear(FEATURES, 4), BarlowTwinsLoss(lambda_param=0.01)
        adapter = BarlowTwinsAdapter(tiny_backbone(), FEATURES, head=head, loss=loss)
        assert adapter.wrapper.model.head is head and adapter.loss is loss

    def test_has_no_temperature(self) -> None:
        with pytest.raises(TypeError, match="unexpected keyword argument 'temperature'"):
            BarlowTwinsAdapter(tiny_backbone(), FEATURES, temperature=0.1)  # type: ignore[call-arg]
