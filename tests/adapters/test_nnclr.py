"""NNCLRAdapter against lightly's NNCLR example, with the support set by hand."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss
from lightly.models.modules import NNCLRPredictionHead, NNCLRProjectionHead
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from selfdamage.adapters import NNCLRAdapter

from .helpers import (
    FEATURES,
    assert_grad_close,
    expected_shared_grads,
    hand_twin,
    ntxent,
    tiny_backbone,
    views,
)

BANK = 32
N = 8
TEMPERATURE = 0.1


class LightlyNNCLR(nn.Module):
    """The model of lightly's examples/pytorch/nnclr.py, at our feature width."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = NNCLRProjectionHead(FEATURES, FEATURES, 128)
        self.prediction_head = NNCLRPredictionHead(128, FEATURES, 128)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(y)
        p = self.prediction_head(z)
        return z.detach(), p


def nearest(z: Tensor, bank: Tensor) -> Tensor:
    """The rows of ``bank`` closest to ``z`` in cosine similarity (NNCLR's support set)."""
    index = (F.normalize(z, dim=1) @ F.normalize(bank, dim=1).T).argmax(dim=1)
    return bank[index]


def hand_step(
    z0: Tensor, p0: Tensor, z1: Tensor, p1: Tensor, bank: Tensor, ptr: int
) -> tuple[Tensor, Tensor, int]:
    """lightly's NNCLR step by hand, enqueuing ``z0``: the loss, the bank, the pointer."""
    loss = 0.5 * (
        ntxent(nearest(z0, bank), p1, TEMPERATURE) + ntxent(nearest(z1, bank), p0, TEMPERATURE)
    )
    bank = bank.clone()
    bank[ptr : ptr + len(z0)] = z0  # N keys per step, the bank wraps around (BANK % N == 0)
    return loss, bank, (ptr + len(z0)) % len(bank)


def norms(module: nn.Module) -> dict[str, Tensor]:
    return {
        f"{name}.{stat}": getattr(m, stat).clone()
        for name, m in module.named_modules()
        if isinstance(m, _BatchNorm)
        for stat in ("running_mean", "running_var")
    }


def bank_of(adapter: NNCLRAdapter) -> tuple[Tensor, int]:
    return adapter.memory_bank.bank.clone(), int(adapter.memory_bank.bank_ptr)


class TestNNCLRAdapter:
    def test_baseline_reproduces_lightly_example_enqueuing_z0(self) -> None:
        torch.manual_seed(0)
        adapter = NNCLRAdapter(tiny_backbone(), FEATURES, baseline=True, memory_bank_size=BANK)
        reference = LightlyNNCLR(copy.deepcopy(adapter.backbone))
        reference.projection_head.load_state_dict(adapter.wrapper.model.head.state_dict())
        reference.prediction_head.load_state_dict(adapter.wrapper.model.predictor.state_dict())
        # In float64: float32 rounding (the reference sums in another order) grows tenfold
        # per SGD step through the heads' BatchNorm1d over 8 samples; float64 keeps it
        # below 1e-12, so the tolerance can be tight.
        adapter.double()
        reference.double()
        bank, ptr = bank_of(adapter)
        optimizers = [
            torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (adapter, reference)
        ]
        for step in range(5):  # 5 * N > BANK: the support set wraps around
            x0, x1 = (x.double() for x in views(N, seed=step))
            loss = adapter(x0, x1)
            (z0, p0), (z1, p1) = reference(x0), reference(x1)
            expected, bank, ptr = hand_step(z0, p0, z1, p1, bank, ptr)
            torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(bank_of(adapter)[0], bank, rtol=1e-10, atol=1e-10)
            assert bank_of(adapter)[1] == ptr
            for optimizer, value in zip(optimizers, (loss, expected)):
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
        ours = adapter.wrapper.model.state_dict()
        for key, value in reference.state_dict().items():
            key = key.replace("projection_head.", "head.").replace("prediction_head.", "predictor.")
            torch.testing.assert_close(ours[key], value, rtol=1e-10, atol=1e-10, msg=key)

    def test_zero_damage_with_a_fresh_twin_is_the_plain_method(self) -> None:
        torch.manual_seed(0)
        adapter = NNCLRAdapter(tiny_backbone(), FEATURES, 0.0, memory_bank_size=BANK)
        reference = LightlyNNCLR(copy.deepcopy(adapter.backbone))
        reference.projection_head.load_state_dict(adapter.wrapper.model.head.state_dict())
        reference.prediction_head.load_state_dict(adapter.wrapper.model.predictor.state_dict())
        bank, ptr = bank_of(adapter)
        x0, x1 = views(N)
        loss = adapter(x0, x1)
        (z0, p0), (z1, p1) = reference(x0), reference(x1)
        expected, bank, _ = hand_step(z0, p0, z1, p1, bank, ptr)
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bank_of(adapter)[0], bank, rtol=1e-5, atol=1e-6)
        loss.backward()
        expected.backward()
        grads = dict(adapter.wrapper.named_parameters())
        for name, param in reference.named_parameters():
            ours = name.replace("projection_head.", "head.").replace(
                "prediction_head.", "predictor."
            )
            grad = grads[f"model.{ours}"].grad
            if f"twin_norms.{ours}" in grads:  # a BatchNorm: dense (x0) + twin (x1) halves
                grad = grad + grads[f"twin_norms.{ours}"].grad
            assert_grad_close(grad, param.grad, name)

    def test_damaged_step_matches_hand_built_twin(self) -> None:
        torch.manual_seed(0)
        adapter = NNCLRAdapter(tiny_backbone(), FEATURES, 0.5, memory_bank_size=BANK)
        optimizer = torch.optim.SGD(adapter.parameters(), lr=0.5)
        adapter(*views(N, seed=1)).backward()  # one step: twin and dense BN state differ
        optimizer.step()
        optimizer.zero_grad()

        dense, twin = copy.deepcopy(adapter.wrapper.model), hand_twin(adapter.wrapper)
        dense_norms, twin_norms = norms(adapter.wrapper.model), norms(adapter.wrapper.twin_norms)
        bank, ptr = bank_of(adapter)
        x0, x1 = views(N, seed=2)
        loss = adapter(x0, x1)
        z0, p0 = dense(x0, with_projection=True)
        z1, p1 = twin(x1, with_projection=True)
        expected, bank, ptr = hand_step(z0.detach(), p0, z1.detach(), p1, bank, ptr)
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        # The support set got the dense projections of x0 only, none of the twin's.
        torch.testing.assert_close(bank_of(adapter)[0], bank, rtol=1e-5, atol=1e-6)
        assert bank_of(adapter)[1] == ptr == 2 * N
        assert not torch.allclose(bank[N : 2 * N], z1.detach(), atol=1e-3)

        loss.backward()
        expected.backward()
        grads = expected_shared_grads(adapter.wrapper, dense, twin)
        for name, param in adapter.wrapper.named_parameters():
            torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
        twin_grads = [p.grad for n, p in twin.named_parameters() if n.startswith("backbone.")]
        assert all(g is not None and g.abs().sum() > 0 for g in twin_grads)  # both branches
        # Dense running statistics moved by x0 only (as the dense copy's), the twin's moved.
        for key, value in norms(dense).items():
            torch.testing.assert_close(norms(adapter.wrapper.model)[key], value, msg=key)
        assert norms(adapter.wrapper.model).keys() == dense_norms.keys()
        moved = norms(adapter.wrapper.twin_norms)
        assert all(not torch.equal(moved[k], v) for k, v in twin_norms.items())
        twin_layers = {n for n, _ in adapter.wrapper.twin_norms.named_modules() if n}
        assert {"head.layers.1", "predictor.layers.1"} <= twin_layers  # dual BN in both heads

    def test_state_dict_round_trip_with_the_support_set(self) -> None:
        torch.manual_seed(0)
        adapter = NNCLRAdapter(tiny_backbone(), FEATURES, 0.5, memory_bank_size=BANK)
        adapter(*views(N, seed=1)).backward()
        state = adapter.state_dict()
        assert int(state["memory_bank.bank_ptr"]) == N
        torch.manual_seed(1)
        fresh = NNCLRAdapter(tiny_backbone(), FEATURES, 0.5, memory_bank_size=BANK)
        fresh.load_state_dict(state)  # strict
        assert torch.equal(fresh.memory_bank.bank, adapter.memory_bank.bank)
        x0, x1 = views(N, seed=2)
        assert torch.equal(fresh(x0, x1), adapter(x0, x1))
        assert torch.equal(fresh.memory_bank.bank, adapter.memory_bank.bank)

    def test_evaluating_without_gradient_enqueues_nothing(self) -> None:
        adapter = NNCLRAdapter(tiny_backbone(), FEATURES, 0.5, memory_bank_size=BANK)
        before = bank_of(adapter)
        with torch.no_grad():
            adapter(*views(N))
        assert torch.equal(bank_of(adapter)[0], before[0]) and bank_of(adapter)[1] == 0

    def test_defaults(self) -> None:
        adapter = NNCLRAdapter(tiny_backbone(), FEATURES)
        assert isinstance(adapter.wrapper.model.head, NNCLRProjectionHead)
        assert isinstance(adapter.wrapper.model.predictor, NNCLRPredictionHead)
        assert isinstance(adapter.loss, NTXentLoss) and adapter.loss.temperature == 0.1
        assert adapter.memory_bank.size == (4096, 128)

    def test_support_set_and_predictor_follow_the_users_head(self) -> None:
        head = NNCLRProjectionHead(FEATURES, 32, 24)
        adapter = NNCLRAdapter(tiny_backbone(), FEATURES, head=head, memory_bank_size=16)
        assert adapter.memory_bank.size == (16, 24)
        linears = [m for m in adapter.wrapper.model.predictor.modules() if isinstance(m, nn.Linear)]
        assert (linears[0].in_features, linears[-1].out_features) == (24, 24)
        assert adapter(*views(N)).isfinite()

    def test_memory_bank_size_goes_with_a_users_loss(self) -> None:
        adapter = NNCLRAdapter(tiny_backbone(), FEATURES, loss=NTXentLoss(0.3), memory_bank_size=16)
        assert adapter.memory_bank.size == (16, 128) and adapter.loss.temperature == 0.3

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"loss": NTXentLoss(), "temperature": 0.1}, ValueError, "temperature=0.1 configures"),
            (
                {"loss": NTXentLoss(memory_bank_size=(64, 128))},
                ValueError,
                r"loss has a memory bank.*memory_bank_size=0",
            ),
            ({"memory_bank_size": 0}, ValueError, "memory_bank_size must be a positive number"),
            ({"memory_bank_size": 2.5}, TypeError, "memory_bank_size must be an int"),
            ({"head": nn.Identity()}, ValueError, "Cannot read the head's output dimension"),
            ({"predictor": "mlp"}, TypeError, "predictor must be a torch.nn.Module, got str"),
            ({"gather_distributed": 1}, TypeError, "gather_distributed must be a bool"),
        ],
    )
    def test_invalid_arguments(
        self, kwargs: dict[str, object], error: type[Exception], message: str
    ) -> None:
        with pytest.raises(error, match=message):
            NNCLRAdapter(tiny_backbone(), FEATURES, **kwargs)  # type: ignore[arg-type]
