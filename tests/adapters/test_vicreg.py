"""VICRegAdapter's defaults: lightly's examples/pytorch/vicreg.py.

Its steps against lightly's example and a hand-built twin: tests/adapters/test_two_view.py.
"""

from __future__ import annotations

from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead
from torch import nn

from selfdamage.adapters import VICRegAdapter

from .helpers import FEATURES, linear_sizes, tiny_backbone


class TestVICRegAdapter:
    def test_default_head_and_loss_are_the_examples(self) -> None:
        adapter = VICRegAdapter(tiny_backbone(), FEATURES)
        head = adapter.wrapper.model.head
        assert isinstance(head, VICRegProjectionHead)
        assert linear_sizes(head) == [(FEATURES, 2048), (2048, 2048)]  # num_layers=2
        assert isinstance(adapter.loss, VICRegLoss)
        weights = (adapter.loss.lambda_param, adapter.loss.mu_param, adapter.loss.nu_param)
        assert weights == (25.0, 25.0, 1.0) and not adapter.loss.gather_distributed

    def test_user_head_and_loss_are_used_as_given(self) -> None:
        head, loss = nn.Linear(FEATURES, 4), VICRegLoss(nu_param=2.0)
        adapter = VICRegAdapter(tiny_backbone(), FEATURES, head=head, loss=loss)
        assert adapter.wrapper.model.head is head and adapter.loss is loss
