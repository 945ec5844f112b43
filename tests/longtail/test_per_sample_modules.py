"""Per-sample losses of the other methods' loss modules, and of the loss calls of a step.

Each reference is computed by hand from the method's formula (lightly's loss code defines
the methods: ``loss/negative_cosine_similarity.py``, ``loss/tico_loss.py``,
``loss/dino_loss.py``); the mean is checked against lightly's loss (1e-6).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, TiCoLoss, VICRegLoss
from torch import Tensor, nn

from selfdamage.longtail.per_sample import per_sample_loss, record_per_sample, why_no_per_sample

TOL = {"rtol": 1e-6, "atol": 1e-6}


def _warming_dino(seed: int) -> tuple[DINOLoss, list[Tensor], list[Tensor]]:
    """A DINO loss in its teacher-temperature warm-up (0.02 -> 0.04 over 5 epochs) with a
    center that is not zero, and two views of teacher and student outputs."""
    gen = torch.Generator().manual_seed(seed)
    teacher = list(torch.randn(2, 6, 32, generator=gen))
    student = list(torch.randn(2, 6, 32, generator=gen))
    criterion = DINOLoss(32, warmup_teacher_temp=0.02, warmup_teacher_temp_epochs=5)
    criterion.center += 0.1
    return criterion, teacher, student


class TestNegativeCosine:
    def test_hand_computed_example(self) -> None:
        z0 = torch.tensor([[3.0, 4.0], [1.0, 0.0], [2.0, 2.0]])
        z1 = torch.tensor([[4.0, 3.0], [0.0, 5.0], [-1.0, -1.0]])
        ours = per_sample_loss(NegativeCosineSimilarity(), z0, z1)
        torch.testing.assert_close(ours, torch.tensor([-24 / 25, 0.0, 1.0]))
        torch.testing.assert_close(ours.mean(), NegativeCosineSimilarity()(z0, z1), **TOL)

    def test_along_the_batch_is_refused(self) -> None:
        with pytest.raises(ValueError, match="dim=0"):
            per_sample_loss(NegativeCosineSimilarity(dim=0), torch.ones(2, 3), torch.ones(2, 3))


class TestTiCo:
    def test_hand_computed_example_before_and_after_the_covariance_update(self) -> None:
        # u = (e1, e2), v = (e1, e1): B = I / 2; C starts at 0, so C' = 0.1 * B = 0.05 I.
        z_a = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
        z_b = torch.tensor([[1.0, 0.0], [5.0, 0.0]])
        criterion = TiCoLoss(beta=0.9, rho=8.0)
        ours = per_sample_loss(criterion, z_a, z_b)
        torch.testing.assert_close(ours, torch.tensor([1 - 1 + 8 * 0.05, 1 - 0 + 8 * 0.05]))
        torch.testing.assert_close(ours.mean(), criterion(z_a, z_b), **TOL)  # C <- 0.05 I
        # Now C' = 0.9 * 0.05 I + 0.1 * I / 2 = 0.095 I.
        ours = per_sample_loss(criterion, z_a, z_b)
        torch.testing.assert_close(ours, torch.tensor([8 * 0.095, 1 + 8 * 0.095]))
        torch.testing.assert_close(ours.mean(), criterion(z_a, z_b), **TOL)

    def test_random_batch_mean(self) -> None:
        gen = torch.Generator().manual_seed(0)
        z_a, z_b = torch.randn(2, 16, 8, generator=gen)
        criterion = TiCoLoss()
        criterion(z_b, z_a)  # a covariance that is not zero
        ours = per_sample_loss(criterion, z_a, z_b, update_covariance_matrix=False)
        torch.testing.assert_close(ours.mean(), criterion(z_a, z_b), **TOL)


class TestDINO:
    def test_hand_computed_example(self) -> None:
        # Sample 0: teacher softmaxes (1/2, 1/2) and (3/4, 1/4), students the same; sample 1
        # is uniform everywhere. Pairs: (t0, s1) and (t1, s0), averaged.
        ln3 = math.log(3)
        teacher = [torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.04 * ln3, 0], [0, 0]])]
        student = [torch.tensor([[0.0, 0.0], [2.0, 2.0]]), torch.tensor([[0.1 * ln3, 0], [0, 0]])]
        criterion = DINOLoss(output_dim=2, warmup_teacher_temp_epochs=1)
        ours = per_sample_loss(criterion, teacher, student)
        t0_s1 = -(0.5 * math.log(3 / 4) + 0.5 * math.log(1 / 4))
        t1_s0 = math.log(2)
        expected = torch.tensor([(t0_s1 + t1_s0) / 2, math.log(2)])
        torch.testing.assert_close(ours, expected)
        torch.testing.assert_close(ours.mean(), criterion(teacher, student), **TOL)

    @pytest.mark.parametrize("options", [{"epoch": 0}, {"epoch": 7}, {"teacher_temp": 0.07}])
    def test_teacher_temperature_options(self, options: dict[str, float]) -> None:
        criterion, teacher, student = _warming_dino(seed=0)
        ours = per_sample_loss(criterion, teacher, student, **options)
        torch.testing.assert_close(ours.mean(), criterion(teacher, student, **options), **TOL)


class TestYourLoss:
    def test_a_per_sample_method_is_used(self) -> None:
        class Gap(nn.Module):
            def per_sample(self, z0: Tensor, z1: Tensor) -> Tensor:
                return (z0 - z1).abs().sum(1)

        ours = per_sample_loss(Gap(), torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))
        torch.testing.assert_close(ours, torch.tensor([3.0]))

    def test_reduction_mean_gives_the_row_means_of_reduction_none(self) -> None:
        z0, z1 = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 1.0]])
        criterion = nn.MSELoss()
        ours = per_sample_loss(criterion, z0, z1)
        torch.testing.assert_close(ours, torch.tensor([(1 + 4) / 2, (9 + 1) / 2]))
        assert criterion.reduction == "mean"
        torch.testing.assert_close(ours.mean(), criterion(z0, z1))

    def test_why_no_per_sample(self) -> None:
        assert why_no_per_sample(NTXentLoss(memory_bank_size=(8, 4))) is None
        assert why_no_per_sample(nn.MSELoss()) is None
        assert why_no_per_sample(nn.MSELoss(reduction="sum")) is not None
        assert "VICRegLoss, has variance and covariance terms" in str(
            why_no_per_sample(VICRegLoss())
        )


class TestRecordPerSample:
    def test_rows_of_one_call_are_folded_per_sample_and_calls_averaged(self) -> None:
        gen = torch.Generator().manual_seed(0)
        a, b, c, d = torch.randn(4, 3, 5, generator=gen)
        criterion = NegativeCosineSimilarity()

        def step() -> Tensor:
            one_call = criterion(torch.cat([a, b]), torch.cat([c, d]))  # 2N rows
            return (one_call + criterion(a, d)) / 2

        loss, ours = record_per_sample(criterion, step, batch_size=3)

        def cos(x: Tensor, y: Tensor) -> list[float]:
            return [float(p @ q / (p.norm() * q.norm())) for p, q in zip(x, y)]

        expected = [
            ((-ac - bd) / 2 - ad) / 2 for ac, bd, ad in zip(cos(a, c), cos(b, d), cos(a, d))
        ]
        torch.testing.assert_close(ours, torch.tensor(expected), **TOL)
        torch.testing.assert_close(ours.mean(), loss, **TOL)
        assert not criterion._forward_pre_hooks  # the recording hook is gone

    @pytest.mark.parametrize(
        ("call", "options"),
        [
            (lambda loss, t, s: loss(t, s, None, 2), {"epoch": 2}),
            (lambda loss, t, s: loss(t, s, 0.07), {"teacher_temp": 0.07}),
            (lambda loss, t, s: loss(teacher_out=t, student_out=s, epoch=2), {"epoch": 2}),
        ],
        ids=["epoch-positional", "teacher_temp-positional", "all-by-name"],
    )
    def test_dino_options_however_passed(self, call: Callable, options: dict) -> None:
        # lightly's DINOLoss.forward(teacher_out, student_out, teacher_temp, epoch): the
        # positional options are the keyword ones (was a TypeError from the hook). The
        # schedule's epoch 2 (0.02 -> 0.04 over 5 epochs) differs from teacher_temp=0.04.
        criterion, teacher, student = _warming_dino(seed=1)
        expected = per_sample_loss(criterion, teacher, student, **options)
        assert not torch.allclose(expected, per_sample_loss(criterion, teacher, student))
        loss, ours = record_per_sample(criterion, lambda: call(criterion, teacher, student))
        torch.testing.assert_close(ours, expected, **TOL)
        torch.testing.assert_close(ours.mean(), loss, **TOL)

    def test_tico_positional_option(self) -> None:
        # TiCoLoss.forward(z_a, z_b, update_covariance_matrix=True), called with False.
        gen = torch.Generator().manual_seed(2)
        z_a, z_b = torch.randn(2, 16, 8, generator=gen)
        criterion = TiCoLoss()
        criterion(z_b, z_a)  # a covariance that is not zero
        loss, ours = record_per_sample(criterion, lambda: criterion(z_a, z_b, False))
        torch.testing.assert_close(ours.mean(), loss, **TOL)

    def test_errors(self) -> None:
        criterion = NegativeCosineSimilarity()
        with pytest.raises(RuntimeError, match="never called its loss"):
            record_per_sample(criterion, lambda: torch.zeros(()))
        x = torch.randn(5, 4)
        with pytest.raises(ValueError, match=r"loss calls on \[5\] rows, not multiples of 2"):
            record_per_sample(criterion, lambda: criterion(x, x), batch_size=2)
        with pytest.raises(TypeError, match="missing a required argument: 'x1'"):
            record_per_sample(criterion, lambda: criterion(x))
        assert not criterion._forward_pre_hooks
