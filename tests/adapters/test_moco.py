"""MoCoAdapter against lightly's MoCo example, a hand-built twin, and the bank by hand."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from selfdamage import SelfDamagingWrapper
from selfdamage.adapters import MoCoAdapter

from .helpers import (
    FEATURES,
    expected_shared_grads,
    hand_twin,
    moco_half,
    ntxent,
    tiny_backbone,
    views,
)

BANK = 64
N = 8


class LightlyMoCo(nn.Module):
    """The model of lightly's examples/pytorch/moco.py, at our feature width."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = MoCoProjectionHead(FEATURES, FEATURES, 128)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x: Tensor) -> Tensor:
        query = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(query)

    def forward_momentum(self, x: Tensor) -> Tensor:
        key = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(key).detach()


def bank_of(adapter: MoCoAdapter) -> tuple[Tensor, int]:
    bank = adapter.loss.memory_bank
    return bank.bank.clone(), int(bank.bank_ptr)


class TestMoCoAdapter:
    def test_baseline_reproduces_lightly_example_with_one_enqueue_per_step(self) -> None:
        torch.manual_seed(0)
        adapter = MoCoAdapter(tiny_backbone(), FEATURES, baseline=True, memory_bank_size=BANK)
        reference = LightlyMoCo(copy.deepcopy(adapter.backbone))
        reference.projection_head.load_state_dict(adapter.wrapper.model.head.state_dict())
        reference.projection_head_momentum.load_state_dict(adapter.wrapper.model.head.state_dict())
        bank, ptr = bank_of(adapter)
        optimizers = [
            torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (adapter, reference)
        ]
        for step in range(3):
            m = cosine_schedule(step, 3, 0.9, 1.0)  # a low momentum, so the EMA shows
            adapter.update_momentum(m)
            update_momentum(reference.backbone, reference.backbone_momentum, m)
            update_momentum(reference.projection_head, reference.projection_head_momentum, m)
            x0, x1 = views(N, seed=step)
            loss = adapter(x0, x1)
            q0, q1 = reference(x0), reference(x1)
            k0, k1 = reference.forward_momentum(x0), reference.forward_momentum(x1)
            expected = (moco_half(q0, k1, bank, 0.2) + moco_half(q1, k0, bank, 0.2)) / 2
            torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
            # By hand: this step's keys, normalized, enqueued once as (k1, k0).
            bank = bank.clone()
            bank[ptr : ptr + 2 * N] = F.normalize(torch.cat([k1, k0]), dim=1)
            ptr += 2 * N
            torch.testing.assert_close(bank_of(adapter)[0], bank, rtol=1e-5, atol=1e-6)
            assert bank_of(adapter)[1] == ptr
            for optimizer, value in zip(optimizers, (loss, expected)):
                optimizer.zero_grad()
                value.backward()
                optimizer.step()

    def test_one_loss_call_equals_both_halves_against_the_pre_step_bank(self) -> None:
        torch.manual_seed(0)
        adapter = MoCoAdapter(tiny_backbone(), FEATURES, 0.5, memory_bank_size=BANK)
        adapter(*views(N, seed=1)).backward()  # the bank now holds real keys
        adapter.zero_grad()
        dense, twin = copy.deepcopy(adapter.wrapper.model), hand_twin(adapter.wrapper)
        momentum = copy.deepcopy(adapter.momentum_encoder)
        halves = [copy.deepcopy(adapter.loss) for _ in range(2)]  # lightly's loss, pre-step bank

        x0, x1 = views(N, seed=2)
        loss = adapter(x0, x1)
        q0, q1, k0, k1 = dense(x0), twin(x1), momentum(x0), momentum(x1)
        expected = (halves[0](q0, k1) + halves[1](q1, k0)) / 2
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)

        loss.backward()
        expected.backward()
        grads = expected_shared_grads(adapter.wrapper, dense, twin)
        for name, param in adapter.wrapper.named_parameters():
            torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)

    def test_bank_after_one_step_holds_the_keys_of_both_views(self) -> None:
        torch.manual_seed(0)
        adapter = MoCoAdapter(tiny_backbone(), FEATURES, 0.5, memory_bank_size=BANK)
        momentum = copy.deepcopy(adapter.momentum_encoder)
        before, _ = bank_of(adapter)
        x0, x1 = views(N)
        adapter(x0, x1)
        bank, ptr = bank_of(adapter)
        assert ptr == 2 * N
        keys = F.normalize(torch.cat([momentum(x1), momentum(x0)]), dim=1)
        torch.testing.assert_close(bank[: 2 * N], keys, rtol=1e-5, atol=1e-6)
        assert torch.equal(bank[2 * N :], before[2 * N :])
        with torch.no_grad():  # evaluating the loss does not enqueue
            adapter(x0, x1)
        assert bank_of(adapter)[1] == 2 * N

    def test_without_memory_bank_each_half_uses_in_batch_negatives(self) -> None:
        torch.manual_seed(0)
        adapter = MoCoAdapter(tiny_backbone(), FEATURES, 0.5, memory_bank_size=0)
        dense, twin = copy.deepcopy(adapter.wrapper.model), hand_twin(adapter.wrapper)
        momentum = copy.deepcopy(adapter.momentum_encoder)
        x0, x1 = views(N)
        loss = adapter(x0, x1)
        k0, k1 = momentum(x0), momentum(x1)
        expected = (ntxent(dense(x0), k1, 0.2) + ntxent(twin(x1), k0, 0.2)) / 2
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)

    def test_momentum_encoder_mirrors_the_dense_model_only(self) -> None:
        adapter = MoCoAdapter(tiny_backbone(), FEATURES, 0.5)
        momentum = adapter.momentum_encoder
        dense = adapter.wrapper.model
        assert [n for n, _ in momentum.named_parameters()] == [
            n for n, _ in dense.named_parameters()
        ]
        count = sum(p.numel() for p in momentum.parameters())
        assert count == sum(p.numel() for p in dense.parameters())
        assert not any(p.requires_grad for p in momentum.parameters())
        assert not any(isinstance(m, SelfDamagingWrapper) for m in momentum.modules())
        assert momentum.backbone is not adapter.backbone

    def test_update_momentum_moves_only_the_momentum_parameters(self) -> None:
        torch.manual_seed(0)
        adapter = MoCoAdapter(tiny_backbone(), FEATURES, 0.5)
        with torch.no_grad():
            for param in adapter.wrapper.model.parameters():
                param.add_(torch.randn_like(param))
        others = {
            k: v.clone()
            for k, v in adapter.state_dict().items()
            if not k.startswith("momentum_encoder.")
        }
        old = {k: v.clone() for k, v in adapter.momentum_encoder.state_dict().items()}
        adapter.update_momentum(0.25)
        for key, value in adapter.state_dict().items():
            if key in others:
                assert torch.equal(value, others[key]), key
        dense = adapter.wrapper.model.state_dict()
        params = {n for n, _ in adapter.momentum_encoder.named_parameters()}
        for key, value in adapter.momentum_encoder.state_dict().items():
            expected = 0.25 * old[key] + 0.75 * dense[key] if key in params else old[key]
            torch.testing.assert_close(value, expected, msg=key)

    @pytest.mark.parametrize(
        ("m", "error", "message"),
        [
            (1.5, ValueError, "m must be a momentum in"),
            (-0.1, ValueError, "m must be a momentum in"),
            (True, TypeError, "m must be a float, got m=True"),
            ("0.99", TypeError, "m must be a float"),
            (float("nan"), ValueError, r"m must be a finite number \(a momentum in \[0, 1\]\)"),
            (float("inf"), ValueError, "m must be a finite number"),
        ],
    )
    def test_update_momentum_rejects_bad_momentum(
        self, m: object, error: type[Exception], message: str
    ) -> None:
        adapter = MoCoAdapter(tiny_backbone(), FEATURES)
        before = copy.deepcopy(adapter.momentum_encoder.state_dict())
        with pytest.raises(error, match=message):
            adapter.update_momentum(m)  # type: ignore[arg-type]
        after = adapter.momentum_encoder.state_dict()
        assert all(torch.equal(after[key], value) for key, value in before.items())

    def test_defaults(self) -> None:
        adapter = MoCoAdapter(tiny_backbone(), FEATURES)
        assert isinstance(adapter.wrapper.model.head, MoCoProjectionHead)
        assert adapter.loss.temperature == 0.2
        assert adapter.loss.memory_bank.size == (4096, 128)

    def test_bank_dimension_follows_the_users_head(self) -> None:
        adapter = MoCoAdapter(tiny_backbone(), FEATURES, head=MoCoProjectionHead(FEATURES, 32, 24))
        assert adapter.loss.memory_bank.size == (4096, 24)
        assert adapter(*views(N)).isfinite()

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"loss": NTXentLoss(memory_bank_size=(64, 32))}, r"memory_bank_size=\(64, 128\)"),
            ({"loss": NTXentLoss(), "memory_bank_size": 8}, "memory_bank_size=8 configures"),
            ({"loss": NTXentLoss(), "temperature": 0.1}, "temperature=0.1 configures"),
            ({"memory_bank_size": -1}, "memory_bank_size must be a number of keys >= 0"),
            ({"head": nn.Identity()}, "Cannot read the head's output dimension"),
        ],
    )
    def test_invalid_arguments(self, kwargs: dict[str, object], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            MoCoAdapter(tiny_backbone(), FEATURES, **kwargs)  # type: ignore[arg-type]

    def test_memory_bank_size_must_be_an_int(self) -> None:
        with pytest.raises(TypeError, match="memory_bank_size must be an int"):
            MoCoAdapter(tiny_backbone(), FEATURES, memory_bank_size=2.5)  # type: ignore[arg-type]

    def test_bank_mismatch_without_linear_head_is_explained_at_forward(self) -> None:
        loss = NTXentLoss(memory_bank_size=(64, 8))
        adapter = MoCoAdapter(tiny_backbone(), FEATURES, head=nn.Identity(), loss=loss)
        with pytest.raises(ValueError, match=r"16-d projections .* 8-d keys"):
            adapter(*views(N))
        assert MoCoAdapter(tiny_backbone(), FEATURES, head=nn.Identity(), memory_bank_size=0)
