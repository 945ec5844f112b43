"""SimCLRAdapter against lightly's SimCLR example and against a twin built by hand."""

from __future__ import annotations

import copy

import pytest
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import Tensor, nn

from selfdamage import ChannelDamage
from selfdamage.adapters import SimCLRAdapter

from .helpers import FEATURES, expected_shared_grads, hand_twin, ntxent, tiny_backbone, views


class LightlySimCLR(nn.Module):
    """The model of lightly's examples/pytorch/simclr.py, at our feature width."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(FEATURES, FEATURES, 128)

    def forward(self, x: Tensor) -> Tensor:
        x = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(x)


class TestSimCLRAdapter:
    def test_baseline_reproduces_lightly_example(self) -> None:
        torch.manual_seed(0)
        adapter = SimCLRAdapter(tiny_backbone(), FEATURES, baseline=True)
        reference = LightlySimCLR(copy.deepcopy(adapter.backbone))
        reference.projection_head.load_state_dict(adapter.wrapper.model.head.state_dict())
        criterion = NTXentLoss(temperature=0.2)
        optimizers = [
            torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (adapter, reference)
        ]
        for step in range(3):
            x0, x1 = views(seed=step)
            loss = adapter(x0, x1)
            expected = criterion(reference(x0), reference(x1))
            torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)
            for optimizer, value in zip(optimizers, (loss, expected)):
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
        ours = adapter.wrapper.model.state_dict()
        for key, value in reference.state_dict().items():
            ours_key = key.replace("projection_head.", "head.")
            torch.testing.assert_close(ours[ours_key], value, rtol=0, atol=1e-6)

    @pytest.mark.parametrize("twin_norm", [True, False])
    def test_damaged_step_matches_hand_built_twin(self, twin_norm: bool) -> None:
        torch.manual_seed(0)
        adapter = SimCLRAdapter(tiny_backbone(), FEATURES, 0.5, twin_norm=twin_norm)
        optimizer = torch.optim.SGD(adapter.parameters(), lr=0.5)
        adapter(*views(seed=1)).backward()  # one step, so twin and dense BN state differ
        optimizer.step()
        optimizer.zero_grad()

        dense = copy.deepcopy(adapter.wrapper.model)
        twin = hand_twin(adapter.wrapper)
        x0, x1 = views(seed=2)
        loss = adapter(x0, x1)
        expected = ntxent(dense(x0), twin(x1), temperature=0.2)
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)

        loss.backward()
        expected.backward()
        grads = expected_shared_grads(adapter.wrapper, dense, twin)
        for name, param in adapter.wrapper.named_parameters():
            torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
        # Each branch updated its own running statistics, and only its own.
        for name, buffer in dense.named_buffers():
            torch.testing.assert_close(adapter.wrapper.model.get_buffer(name), buffer)
            if twin_norm:
                twin_buffer = adapter.wrapper.twin_norms.get_buffer(name)
                torch.testing.assert_close(twin_buffer, twin.get_buffer(name))

    def test_default_loss_and_head(self) -> None:
        adapter = SimCLRAdapter(tiny_backbone(), FEATURES)
        assert isinstance(adapter.loss, NTXentLoss) and adapter.loss.temperature == 0.2
        assert isinstance(adapter.wrapper.model.head, SimCLRProjectionHead)
        assert SimCLRAdapter(tiny_backbone(), FEATURES, temperature=0.5).loss.temperature == 0.5

    def test_user_head_and_loss_are_used_as_given(self) -> None:
        head, loss = nn.Linear(FEATURES, 4), NTXentLoss(temperature=0.1)
        adapter = SimCLRAdapter(tiny_backbone(), FEATURES, head=head, loss=loss)
        assert adapter.wrapper.model.head is head and adapter.loss is loss

    def test_temperature_with_loss_is_rejected(self) -> None:
        with pytest.raises(ValueError, match=r"temperature=0\.1 configures the default loss"):
            SimCLRAdapter(tiny_backbone(), FEATURES, loss=NTXentLoss(), temperature=0.1)

    def test_loss_with_memory_bank_is_rejected(self) -> None:
        with pytest.raises(ValueError, match=r"loss has a memory bank.*MoCoAdapter"):
            SimCLRAdapter(tiny_backbone(), FEATURES, loss=NTXentLoss(memory_bank_size=(64, 128)))


class TestChannelDamage:
    def test_channel_damage_through_the_adapter(self) -> None:
        torch.manual_seed(0)
        backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        damage = ChannelDamage(0.5, example_inputs=torch.randn(2, 3, 8, 8))  # backbone inputs
        model = SimCLRAdapter(backbone, 16, damage=damage)
        assert model.damage is damage and not model.baseline
        assert model.wrapper.channel_sparsity == pytest.approx(0.5, abs=0.05)
        loss = model(torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8))
        loss.backward()
        assert torch.isfinite(loss)
