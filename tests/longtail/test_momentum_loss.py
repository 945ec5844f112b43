"""MomentumLoss against the authors' formulas (MediaBrain-SJTU/BCL) on fixed loss histories.

The reference below is written from the authors' code, not ours: their per-sample loop in
``train.py: train`` (the same in ``train_sdclr.py: train_prune``) and their normalization
``data/memoboosted_cifar100.py: calculate_momentum_weight`` (with ``torch.std``).
"""

from __future__ import annotations

from pathlib import Path

import ddp_harness
import pytest
import torch
from torch import Tensor

from selfdamage.longtail.momentum_loss import MomentumLoss, normalize_momentum_loss

BETA = 0.97  # the authors' --momentum_loss_beta default (train.py, train_sdclr.py)


def _authors_epoch(shadow: Tensor, batches: list[tuple[Tensor, Tensor]], epoch: int) -> Tensor:
    """train.py: train: one sample at a time, raw loss in epoch 1, EMA afterwards.

    Returns the epoch's row of their ``momentum_loss`` matrix (0 for samples not seen).
    """
    row = torch.zeros_like(shadow)
    for index, loss in batches:
        for count in range(len(index)):
            if epoch > 1:
                new = (1.0 - BETA) * loss[count] + BETA * shadow[index[count]]
            else:
                new = loss[count]
            shadow[index[count]] = new
            row[index[count]] = new
    return row


def _authors_weight(row: Tensor) -> Tensor:
    """memoboosted_cifar100.py: calculate_momentum_weight."""
    weight = (row - torch.mean(row)) / torch.std(row)
    return (weight / torch.max(torch.abs(weight))) / 2 + 1 / 2


def _history(
    num_samples: int, epochs: int, batch: int, seed: int
) -> list[list[tuple[Tensor, Tensor]]]:
    """Random losses in shuffled batches covering every sample once per epoch."""
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(epochs):
        order = torch.randperm(num_samples, generator=gen)
        losses = torch.rand(num_samples, generator=gen, dtype=torch.float64) * 5
        history.append([(idx, losses[idx]) for idx in order.split(batch)])
    return history


class TestMomentumLoss:
    def test_hand_computed_two_epochs(self) -> None:
        # follows train.py: train (EMA, beta 0.97) and calculate_momentum_weight, by hand
        tracker = MomentumLoss(3)
        tracker.update(torch.tensor([2, 0]), torch.tensor([6.0, 1.0]))
        tracker.update(torch.tensor([1]), torch.tensor([2.0]))
        scores = tracker.step()
        # epoch 1: m = loss = (1, 2, 6); mean 3; (m - 3) / 3 / 2 + 1/2
        torch.testing.assert_close(scores, torch.tensor([1 / 6, 1 / 3, 1.0]))
        tracker.update(torch.tensor([0, 1, 2]), torch.tensor([4.0, 2.0, 0.0]))
        scores = tracker.step()
        m = [0.03 * 4 + 0.97 * 1, 0.03 * 2 + 0.97 * 2, 0.03 * 0 + 0.97 * 6]  # 1.09, 2, 5.82
        torch.testing.assert_close(tracker.momentum_loss, torch.tensor(m))
        mean = sum(m) / 3
        expected = [(x - mean) / (5.82 - mean) / 2 + 0.5 for x in m]
        torch.testing.assert_close(scores, torch.tensor(expected))

    @pytest.mark.parametrize("batch", [1, 4, 7])
    def test_matches_authors_loop_on_a_loss_history(self, batch: int) -> None:
        # follows train.py: train (per-sample EMA loop) + calculate_momentum_weight
        num_samples, epochs = 23, 5
        tracker = MomentumLoss(num_samples)
        shadow = torch.zeros(num_samples, dtype=torch.float64)
        for epoch, batches in enumerate(_history(num_samples, epochs, batch, seed=batch), 1):
            for index, loss in batches:
                tracker.update(index, loss)
            row = _authors_epoch(shadow, batches, epoch)
            scores = tracker.step()
            torch.testing.assert_close(tracker.momentum_loss, row.float(), rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(scores, _authors_weight(row).float(), rtol=0, atol=1e-6)

    def test_scores_are_the_authors_default_zero_until_the_first_epoch_ends(self) -> None:
        # follows memoboosted_cifar100.py: momentum_weight starts as zeros
        tracker = MomentumLoss(4)
        tracker.update(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
        assert torch.equal(tracker.scores, torch.zeros(4))
        assert tracker.step().max() == 1.0

    def test_longer_warmup_keeps_scores_zero(self) -> None:
        tracker = MomentumLoss(4, warmup_epochs=2)
        for expect_zero in (True, False):
            tracker.update(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
            assert torch.equal(tracker.step(), torch.zeros(4)) == expect_zero

    def test_unseen_sample_keeps_its_momentum_loss(self) -> None:
        # deliberate difference: the authors' row would hold 0 for sample 2 in epoch 2
        tracker = MomentumLoss(3)
        tracker.update(torch.arange(3), torch.tensor([1.0, 2.0, 3.0]))
        tracker.step()
        tracker.update(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]))
        tracker.step()
        torch.testing.assert_close(tracker.momentum_loss, torch.tensor([1.0, 2.0, 3.0]))

    def test_equal_losses_give_the_midpoint_not_nan(self) -> None:
        torch.testing.assert_close(
            normalize_momentum_loss(torch.full((5,), 2.0)), torch.full((5,), 0.5)
        )

    def test_resume_mid_epoch_continues_identically(self) -> None:
        history = _history(17, 3, 5, seed=0)
        flat = [step for epoch in history for step in [*epoch, None]]  # None: end of epoch
        straight, first = MomentumLoss(17), MomentumLoss(17)
        cut = len(flat) // 2 + 1
        for i, step in enumerate(flat):
            for tracker in (straight, first) if i < cut else (straight,):
                tracker.step() if step is None else tracker.update(*step)
        resumed = MomentumLoss(17)
        resumed.load_state_dict(first.state_dict())
        for step in flat[cut:]:
            resumed.step() if step is None else resumed.update(*step)
        for name, value in straight.state_dict().items():
            assert torch.equal(value, resumed.state_dict()[name]), name

    def test_state_dict_keys(self) -> None:
        assert set(MomentumLoss(2).state_dict()) == {
            "momentum_loss",
            "scores",
            "epoch_loss",
            "seen",
            "epochs",
        }

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"num_samples": 0}, ValueError, "num_samples must be >= 1, got num_samples=0"),
            ({"num_samples": 2.0}, TypeError, "num_samples must be an int"),
            ({"num_samples": 2, "momentum": 1.0}, ValueError, "momentum must be in [0.0, 1.0)"),
            ({"num_samples": 2, "warmup_epochs": 0}, ValueError, "warmup_epochs must be >= 1"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict, error: type[Exception], message: str) -> None:
        with pytest.raises(
            error, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
        ):
            MomentumLoss(**kwargs)

    def test_bad_update(self) -> None:
        tracker = MomentumLoss(4)
        with pytest.raises(ValueError, match=r"indices of shape \(2,\) and losses of shape \(3,\)"):
            tracker.update(torch.tensor([0, 1]), torch.zeros(3))
        with pytest.raises(TypeError, match="indices must be an integer tensor"):
            tracker.update(torch.tensor([0.0, 1.0]), torch.zeros(2))
        mask = torch.tensor([False, False, True, True])
        with pytest.raises(TypeError, match=r"got dtype torch\.bool: a mask would be read as"):
            tracker.update(mask, torch.tensor([1.0, 2.0, 3.0, 4.0]))  # was: rows 0 and 1 set
        assert not tracker.seen.any() and not tracker.epoch_loss.any()


def _ddp_worker(rank: int, world: int, batches: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    tracker = MomentumLoss(12)
    for epoch in range(2):
        for index, loss in batches:
            half = len(index) // world
            part = slice(rank * half, (rank + 1) * half)
            tracker.update(index[part], loss[part] + epoch)
        tracker.step()
    return tracker.state_dict()


class TestDistributed:
    def test_two_ranks_hold_the_single_process_state(self, tmp_path: Path) -> None:
        batches = _history(12, 1, 4, seed=3)[0]
        single = MomentumLoss(12)
        for epoch in range(2):
            for index, loss in batches:
                single.update(index, loss + epoch)
            single.step()
        for state in ddp_harness.run(_ddp_worker, tmp_path, batches):
            for name, value in single.state_dict().items():
                torch.testing.assert_close(state[name], value, rtol=0, atol=0)
