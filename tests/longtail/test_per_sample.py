"""Per-sample contrastive losses: their mean is lightly's loss, each value the authors' one.

The per-sample definition follows the authors' ``losses/nt_xent.py: nt_xent(...,
average=False)`` (MediaBrain-SJTU/BCL): the mean of a sample's two anchor losses.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import ddp_harness
import pytest
import torch
from lightly.loss import BarlowTwinsLoss, DCLLoss, DCLWLoss, NTXentLoss, VICRegLoss
from torch import Tensor, nn

from selfdamage.longtail.per_sample import dcl_per_sample, ntxent_per_sample, per_sample_loss


def _authors_nt_xent(z0: Tensor, z1: Tensor, t: float) -> Tensor:
    """nt_xent(x, t, features2, average=False), written out from their formula."""
    out_1, out_2 = nn.functional.normalize(z0, dim=-1), nn.functional.normalize(z1, dim=-1)
    n = len(z0)
    out = torch.cat([out_1, out_2], dim=0)
    neg = torch.exp(out @ out.t() / t)
    mask = torch.ones(n, 2 * n, dtype=torch.bool)
    for i in range(n):
        mask[i, i] = mask[i, i + n] = False
    neg = neg.masked_select(torch.cat([mask, mask], 0)).view(2 * n, -1)
    pos = torch.exp(torch.sum(out_1 * out_2, dim=-1) / t)
    pos = torch.cat([pos, pos], dim=0)
    loss = -torch.log(pos / (pos + neg.sum(dim=-1)))
    return loss.view(2, n).mean(0)


def _embeddings(n: int, d: int = 16, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)


class TestNTXentPerSample:
    @pytest.mark.parametrize("temperature", [0.5, 1.0])
    def test_hand_computed_example(self, temperature: float) -> None:
        # follows losses/nt_xent.py: nt_xent(average=False), computed by hand
        z0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        z1 = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
        t = temperature
        anchor_u0 = math.log(1 + 2 * math.exp(-0.6 / t))  # negatives at 0 and 0, positive 0.6
        anchor_v0 = math.log(1 + 2 * math.exp((0.8 - 0.6) / t))  # negatives 0.8 and 0.8
        anchor_1 = math.log(1 + (1 + math.exp(0.8 / t)) / math.exp(1 / t))  # u1 and v1 alike
        expected = torch.tensor([(anchor_u0 + anchor_v0) / 2, anchor_1])
        torch.testing.assert_close(ntxent_per_sample(z0, z1, t), expected)

    @pytest.mark.parametrize(("n", "temperature"), [(1, 0.5), (5, 0.2), (32, 0.1)])
    def test_matches_the_authors_per_sample_loss(self, n: int, temperature: float) -> None:
        # follows losses/nt_xent.py: nt_xent(average=False)
        z0, z1 = _embeddings(n)
        torch.testing.assert_close(
            ntxent_per_sample(z0.double(), z1.double(), temperature),
            _authors_nt_xent(z0.double(), z1.double(), temperature),
            rtol=1e-9,
            atol=1e-9,
        )

    @pytest.mark.parametrize(("n", "temperature"), [(1, 0.5), (8, 0.2), (64, 0.07)])
    def test_mean_and_gradient_equal_lightly(self, n: int, temperature: float) -> None:
        z0, z1 = _embeddings(n)
        ours_z = [z.clone().requires_grad_() for z in (z0, z1)]
        theirs_z = [z.clone().requires_grad_() for z in (z0, z1)]
        ours = ntxent_per_sample(*ours_z, temperature).mean()
        theirs = NTXentLoss(temperature=temperature)(*theirs_z)
        ours.backward()
        theirs.backward()
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
        for a, b in zip(ours_z, theirs_z):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)

    def test_bad_input(self) -> None:
        z0, z1 = _embeddings(4)
        with pytest.raises(ValueError, match=r"z0 of shape \(4, 16\) and z1 of shape \(3, 16\)"):
            ntxent_per_sample(z0, z1[:3], 0.5)
        with pytest.raises(ValueError, match="temperature must be > 0"):
            ntxent_per_sample(z0, z1, 0.0)


class TestDCLPerSample:
    @pytest.mark.parametrize("weighted", [False, True])
    def test_mean_equals_lightly(self, weighted: bool) -> None:
        z0, z1 = _embeddings(16)
        criterion = DCLWLoss(temperature=0.1, sigma=0.5) if weighted else DCLLoss(temperature=0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # lightly's torch.tensor(tensor)
            ours = per_sample_loss(criterion, z0, z1)
            theirs = criterion(z0, z1)
        assert ours.shape == (16,)
        torch.testing.assert_close(ours.mean(), theirs, rtol=1e-6, atol=1e-6)

    def test_hand_computed_example(self) -> None:
        z0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        z1 = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
        # anchor u0: -0.6 + log(e^0 + e^0); v0: -0.6 + log(e^0.8 + e^0.8)
        sample0 = (-0.6 + math.log(2) - 0.6 + math.log(2 * math.exp(0.8))) / 2
        # anchors u1, v1: -1 + log(e^0 + e^0.8)
        sample1 = -1 + math.log(1 + math.exp(0.8))
        torch.testing.assert_close(dcl_per_sample(z0, z1, 1.0), torch.tensor([sample0, sample1]))


class TestPerSampleLoss:
    def test_ntxent_dispatch(self) -> None:
        z0, z1 = _embeddings(6)
        torch.testing.assert_close(
            per_sample_loss(NTXentLoss(temperature=0.3), z0, z1), ntxent_per_sample(z0, z1, 0.3)
        )

    def test_memory_bank_gives_each_querys_infonce_against_the_bank(self) -> None:
        # MoCo: z0[i] is a query, z1[i] its key, the bank's rows the negatives.
        z0, z1 = _embeddings(4)
        criterion = NTXentLoss(temperature=0.5, memory_bank_size=(16, 16))
        bank = criterion.memory_bank.bank.clone()  # before the call enqueues z1
        ours = per_sample_loss(criterion, z0, z1)
        u, v = nn.functional.normalize(z0, dim=1), nn.functional.normalize(z1, dim=1)
        expected = []
        for i in range(4):
            negatives = sum(math.exp(float(u[i] @ key) / 0.5) for key in bank)
            positive = math.exp(float(u[i] @ v[i]) / 0.5)
            expected.append(-math.log(positive / (positive + negatives)))
        torch.testing.assert_close(ours, torch.tensor(expected), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.mean(), criterion(z0, z1), rtol=1e-6, atol=1e-6)

    def test_batch_level_losses_are_refused(self) -> None:
        z0, z1 = _embeddings(4)
        with pytest.raises(TypeError, match="BarlowTwinsLoss, is a function of the whole batch"):
            per_sample_loss(BarlowTwinsLoss(), z0, z1)
        with pytest.raises(TypeError, match="VICRegLoss, has variance and covariance terms"):
            per_sample_loss(VICRegLoss(), z0, z1)

    def test_other_loss_is_refused(self) -> None:
        z0, z1 = _embeddings(4)
        with pytest.raises(TypeError, match="its loss, CosineSimilarity, has no known per-sample"):
            per_sample_loss(nn.CosineSimilarity(), z0, z1)


def _ddp_worker(rank: int, world: int, z0: Tensor, z1: Tensor) -> Tensor:
    half = len(z0) // world
    part = slice(rank * half, (rank + 1) * half)
    criterion = NTXentLoss(temperature=0.2, gather_distributed=True)
    return per_sample_loss(criterion, z0[part], z1[part]).detach()


class TestDistributed:
    def test_gathered_negatives_give_the_single_process_losses(self, tmp_path: Path) -> None:
        z0, z1 = _embeddings(8)
        single = ntxent_per_sample(z0, z1, 0.2)
        ranks = ddp_harness.run(_ddp_worker, tmp_path, z0, z1)
        torch.testing.assert_close(torch.cat(ranks), single, rtol=1e-6, atol=1e-6)
