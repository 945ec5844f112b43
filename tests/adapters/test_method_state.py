"""Method state in the state_dict: lightly's banks and TiCo's C, and old checkpoints."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss, TiCoLoss
from torch import nn

from selfdamage.adapters import MoCoAdapter, SimCLRAdapter
from selfdamage.adapters.method_state import persist_method_state

from .helpers import FEATURES, tiny_backbone, views

BANK_KEYS = {"loss.memory_bank.bank", "loss.memory_bank.bank_ptr"}
N = 8


def trained_moco(seed: int = 0) -> MoCoAdapter:
    torch.manual_seed(seed)
    adapter = MoCoAdapter(tiny_backbone(), FEATURES, 0.5, memory_bank_size=64)
    adapter(*views(N, seed=1)).backward()  # the bank now holds 2N real keys
    return adapter


class TestPersistMethodState:
    def test_moco_bank_is_in_the_state_dict_and_round_trips(self) -> None:
        adapter = trained_moco()
        state = adapter.state_dict()
        assert set(state) >= BANK_KEYS
        assert int(state["loss.memory_bank.bank_ptr"]) == 2 * N
        fresh = MoCoAdapter(tiny_backbone(), FEATURES, 0.5, memory_bank_size=64)
        fresh.load_state_dict(copy.deepcopy(state))  # strict
        bank = adapter.loss.memory_bank
        assert torch.equal(fresh.loss.memory_bank.bank, bank.bank)
        assert int(fresh.loss.memory_bank.bank_ptr) == 2 * N
        x0, x1 = views(N, seed=2)
        assert torch.equal(fresh(x0, x1), adapter(x0, x1))  # the next step, bit for bit

    def test_bank_numbers_are_lightlys(self) -> None:
        # Persistence changes nothing in the numbers: the adapter's loss, fed the same
        # queries and keys, equals a plain lightly NTXentLoss holding the same bank.
        adapter = trained_moco()
        reference = NTXentLoss(0.2, memory_bank_size=(64, 128))
        reference.memory_bank.bank.copy_(adapter.loss.memory_bank.bank)
        reference.memory_bank.bank_ptr.copy_(adapter.loss.memory_bank.bank_ptr)
        gen = torch.Generator().manual_seed(3)
        q, k = torch.randn(2 * N, 128, generator=gen), torch.randn(2 * N, 128, generator=gen)
        q.requires_grad_(True)
        assert torch.equal(adapter.loss(q, k), reference(q, k))
        assert torch.equal(adapter.loss.memory_bank.bank, reference.memory_bank.bank)
        assert torch.equal(adapter.loss.memory_bank.bank_ptr, reference.memory_bank.bank_ptr)

    def test_state_dict_without_bank_keys_loads_strictly_and_keeps_the_bank(self) -> None:
        # What selfdamage 0.1 and 0.2 wrote: the bank was not in the state_dict.
        old = {k: v for k, v in trained_moco(seed=1).state_dict().items() if k not in BANK_KEYS}
        adapter = trained_moco(seed=0)
        bank = adapter.loss.memory_bank.bank.clone()
        result = adapter.load_state_dict(old)  # strict
        assert result.missing_keys == [] and result.unexpected_keys == []
        assert torch.equal(adapter.loss.memory_bank.bank, bank)
        assert int(adapter.loss.memory_bank.bank_ptr) == 2 * N
        key = "wrapper.model.head.layers.0.weight"  # taken from the other model
        assert torch.equal(adapter.state_dict()[key], old[key])

    def test_other_missing_keys_are_still_reported(self) -> None:
        adapter = trained_moco()
        state = adapter.state_dict()
        del state["loss.memory_bank.bank"], state["momentum_encoder.head.layers.0.weight"]
        with pytest.raises(RuntimeError, match=r"Missing key\(s\).*head\.layers\.0\.weight"):
            adapter.load_state_dict(state)
        result = adapter.load_state_dict(state, strict=False)
        assert result.missing_keys == ["momentum_encoder.head.layers.0.weight"]

    def test_nested_module_loads_an_old_state_dict(self) -> None:
        # Under another module (a LightningModule, say) the keys carry a prefix.
        outer = nn.ModuleDict({"model": trained_moco()})
        old = {k: v for k, v in outer.state_dict().items() if "memory_bank" not in k}
        outer.load_state_dict(old)  # strict

    def test_simclr_keeps_its_0_1_keys(self) -> None:
        adapter = SimCLRAdapter(tiny_backbone(), FEATURES, 0.5)  # a disabled bank (size 0)
        assert not any("memory_bank" in k for k in adapter.state_dict())

    def test_adapter_still_pickles_and_deep_copies(self) -> None:
        adapter = trained_moco()
        buffer = io.BytesIO()
        torch.save(adapter, buffer)  # the whole module, load hooks included
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        assert torch.equal(loaded.loss.memory_bank.bank, adapter.loss.memory_bank.bank)
        assert pickle.loads(pickle.dumps(copy.deepcopy(adapter))) is not None
        old = {k: v for k, v in adapter.state_dict().items() if k not in BANK_KEYS}
        loaded.load_state_dict(old)  # the copied hook still fills in the bank

    def test_tico_covariance_starts_as_lightlys_zeros(self) -> None:
        loss = TiCoLoss()
        persist_method_state(loss, 6)
        assert torch.equal(loss.state_dict()["C"], torch.zeros(6, 6))
        reference = TiCoLoss()  # lightly: C is None, then zeros of the first batch's B
        gen = torch.Generator().manual_seed(0)
        z_a, z_b = torch.randn(5, 6, generator=gen), torch.randn(5, 6, generator=gen)
        assert torch.equal(loss(z_a, z_b), reference(z_a, z_b))
        assert reference.C is not None and torch.equal(loss.C, reference.C)
        b = F.normalize(z_a, dim=1).T @ F.normalize(z_a, dim=1) / 5
        torch.testing.assert_close(loss.C, 0.1 * b, rtol=1e-6, atol=1e-7)
        assert "C" in dict(loss.named_buffers())  # still a buffer after the update

    def test_tico_covariance_follows_to_and_loads_without_the_key(self) -> None:
        loss = TiCoLoss()
        persist_method_state(loss, 4)
        loss.double()
        assert loss.C.dtype == torch.float64
        loss.C.fill_(1.0)
        loss.load_state_dict({})  # strict: a state_dict from before keeps C as it is
        assert torch.equal(loss.C, torch.ones(4, 4, dtype=torch.float64))

    def test_tico_called_before_keeps_its_covariance(self) -> None:
        loss = TiCoLoss()
        loss(torch.randn(4, 3), torch.randn(4, 3))
        covariance = loss.C
        persist_method_state(loss, None)
        assert loss.state_dict()["C"].data_ptr() == covariance.data_ptr()

    def test_fresh_tico_needs_the_projection_dimension(self) -> None:
        with pytest.raises(ValueError, match="projection_dim=None"):
            persist_method_state(TiCoLoss(), None)
