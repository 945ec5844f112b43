from __future__ import annotations

import pytest
import torch

from selfdamage.damage.masks import (
    apply_mask,
    global_magnitude_masks,
    kth_smallest,
    num_to_prune,
    smallest_k_mask,
)


class TestNumToPrune:
    @pytest.mark.parametrize(
        ("numel", "ratio", "expected"),
        [(10, 0.0, 0), (10, 0.25, 3), (10, 0.24, 2), (1000, 0.9, 900), (3, 0.5, 2), (7, 0.99, 7)],
    )
    def test_rounds_to_nearest(self, numel: int, ratio: float, expected: int) -> None:
        assert num_to_prune(numel, ratio) == expected


class TestKthSmallest:
    @pytest.mark.parametrize("n", [5, 1_000, 1_500_000])
    def test_matches_full_sort(self, n: int) -> None:
        gen = torch.Generator().manual_seed(n)
        x = torch.randn(n, generator=gen).abs()
        reference = torch.sort(x).values
        for k in (1, n // 3 + 1, (9 * n) // 10, n):
            assert kth_smallest(x, k) == reference[k - 1]

    def test_sorted_input_falls_back_correctly(self) -> None:
        # A sorted input defeats any strided sample; the result must still be exact.
        x = torch.arange(2_000_000, dtype=torch.float32)
        assert kth_smallest(x, 1_234_567) == 1_234_566.0


class TestSmallestKMask:
    def test_marks_exactly_k_smallest(self) -> None:
        scores = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7])
        assert smallest_k_mask(scores, 2).tolist() == [False, True, False, True, False]

    def test_ties_earliest_first(self) -> None:
        scores = torch.tensor([2.0, 1.0, 1.0, 1.0, 0.5])
        # 0.5 first, then the two earliest of the three 1.0s.
        assert smallest_k_mask(scores, 3).tolist() == [False, True, True, False, True]

    def test_ties_deterministic_on_large_input(self) -> None:
        scores = torch.zeros(3_000_000)
        mask = smallest_k_mask(scores, 1_000_000)
        assert mask[:1_000_000].all() and not mask[1_000_000:].any()

    @pytest.mark.parametrize("k", [-1, 5])
    def test_bad_k(self, k: int) -> None:
        with pytest.raises(ValueError, match=r"k must be in \[0, 4\]"):
            smallest_k_mask(torch.zeros(4), k)


class TestGlobalMagnitudeMasks:
    def test_hand_built_global_threshold(self) -> None:
        # 10 weights over two layers; by hand, the 6 smallest |w| are
        # 0.01, -0.02, 0.03 (layer a) and 0.04, -0.05, 0.06 (layer b).
        a = torch.tensor([[0.01, -0.02], [0.9, 0.03]])
        b = torch.tensor([0.5, 0.04, -0.05, -0.8, 0.06, 0.7])
        mask_a, mask_b = global_magnitude_masks([a, b], prune_ratio=0.6)
        assert mask_a.tolist() == [[False, False], [True, False]]
        assert mask_b.tolist() == [True, False, False, True, False, True]
        assert mask_a.dtype == torch.bool and mask_a.shape == a.shape

    def test_not_per_layer(self) -> None:
        # A layer of tiny weights loses everything: the threshold is global.
        small, large = torch.full((4,), 1e-3), torch.arange(1.0, 5.0)
        mask_small, mask_large = global_magnitude_masks([small, large], prune_ratio=0.5)
        assert not mask_small.any() and mask_large.all()

    @pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.9, 0.999])
    def test_realised_sparsity_within_one_weight(self, ratio: float) -> None:
        gen = torch.Generator().manual_seed(0)
        weights = [torch.randn(s, generator=gen) for s in [(7, 3), (101,), (13, 2, 3)]]
        n = sum(w.numel() for w in weights)
        masks = global_magnitude_masks(weights, ratio)
        pruned = sum(int((~m).sum()) for m in masks)
        assert abs(pruned - ratio * n) <= 1.0

    def test_random_part_counts(self) -> None:
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(1000, generator=gen)
        order = torch.argsort(w.abs())
        (mask,) = global_magnitude_masks(
            [w], 0.5, random_ratio=0.2, generator=torch.Generator().manual_seed(1)
        )
        pruned = ~mask
        assert int(pruned.sum()) == 500
        # The 300 smallest magnitudes are pruned by magnitude...
        assert pruned[order[:300]].all()
        # ...and the other 200 are drawn from the remaining 700 at random, so some of the
        # largest weights go too (probability of none among the top 350 is negligible).
        assert pruned[order[650:]].sum() > 0

    @pytest.mark.parametrize(
        ("prune_ratio", "random_ratio", "by_magnitude"),
        # n = 10: round(10 * prune_ratio) pruned in all, round(10 * random_ratio) of them at
        # random, the rest by magnitude. (0.14, 0.05): 1 in all, 1 at random, 0 by magnitude;
        # (0.26, 0.14): 3 in all, 1 at random, 2 by magnitude.
        [(0.14, 0.05, 0), (0.26, 0.14, 2)],
    )
    def test_random_part_is_round_random_ratio_n_of_the_total(
        self, prune_ratio: float, random_ratio: float, by_magnitude: int
    ) -> None:
        w = torch.arange(1.0, 11.0)  # magnitudes 1..10: index i is the (i+1)-th smallest
        draws = set()
        for seed in range(20):
            gen = torch.Generator().manual_seed(seed)
            (keep,) = global_magnitude_masks(
                [w], prune_ratio, random_ratio=random_ratio, generator=gen
            )
            pruned = set((~keep).nonzero().flatten().tolist())
            assert len(pruned) == round(prune_ratio * 10)
            assert set(range(by_magnitude)) <= pruned  # the smallest, every time
            draws.add(frozenset(pruned - set(range(by_magnitude))))
        assert all(len(d) == 1 for d in draws)  # one at random, among the weights kept
        assert len(draws) > 1  # ...and not the same one for every seed

    def test_float64_weights_are_compared_in_float64(self) -> None:
        # 1 + 1e-12 and 1 are equal in float32 (the tie would keep the later one).
        w = torch.tensor([1.0 + 1e-12, 1.0], dtype=torch.float64)
        (keep,) = global_magnitude_masks([w], 0.5)
        assert keep.tolist() == [True, False]

    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
    def test_half_weights_are_compared_in_float32(self, dtype: torch.dtype) -> None:
        w = torch.tensor([3.0, 1.0, 2.0, 0.5], dtype=dtype)
        (keep,) = global_magnitude_masks([w], 0.5)
        assert keep.tolist() == [True, False, True, False]

    def test_random_part_is_seeded(self) -> None:
        w = [torch.randn(500, generator=torch.Generator().manual_seed(0))]

        def draw(seed: int) -> torch.Tensor:
            gen = torch.Generator().manual_seed(seed)
            return global_magnitude_masks(w, 0.6, random_ratio=0.3, generator=gen)[0]

        assert torch.equal(draw(7), draw(7))
        assert not torch.equal(draw(7), draw(8))

    def test_all_random(self) -> None:
        w = [torch.randn(200, generator=torch.Generator().manual_seed(0))]
        gen = torch.Generator().manual_seed(0)
        (mask,) = global_magnitude_masks(w, 0.5, random_ratio=0.5, generator=gen)
        assert int((~mask).sum()) == 100

    def test_zero_ratio_keeps_everything(self) -> None:
        (mask,) = global_magnitude_masks([torch.zeros(5)], 0.0)
        assert mask.all()

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"prune_ratio": 1.0}, r"prune_ratio must be in \[0, 1\), got prune_ratio=1.0"),
            ({"prune_ratio": -0.1}, r"prune_ratio must be in \[0, 1\)"),
            (
                {"prune_ratio": 0.5, "random_ratio": 0.6},
                r"random_ratio must be in \[0, prune_ratio=0.5\]",
            ),
        ],
    )
    def test_bad_ratios(self, kwargs: dict[str, float], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            global_magnitude_masks([torch.ones(3)], **kwargs)

    def test_non_finite(self) -> None:
        with pytest.raises(ValueError, match="NaN or infinite"):
            global_magnitude_masks([torch.tensor([1.0, float("nan")])], 0.5)

    def test_empty(self) -> None:
        with pytest.raises(ValueError, match="weights is empty"):
            global_magnitude_masks([], 0.5)


class TestApplyMask:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
    def test_keeps_or_zeroes_each_entry_with_its_sign(self, dtype: torch.dtype) -> None:
        weight = torch.tensor([[1.5, -2.0], [-0.25, 3.0]], dtype=dtype, requires_grad=True)
        mask = torch.tensor([[True, False], [False, True]])
        out = apply_mask(weight, mask)
        # The product's zeros keep the sign of the weight, as weight * mask gives them.
        expected = torch.tensor([[1.5, -0.0], [-0.0, 3.0]], dtype=dtype)
        assert out.dtype == dtype
        assert torch.equal(out, expected)
        assert torch.equal(torch.signbit(out), torch.signbit(expected))
        out.backward(torch.tensor([[10.0, 20.0], [30.0, 40.0]], dtype=dtype))
        assert torch.equal(weight.grad, torch.tensor([[10.0, 0.0], [0.0, 40.0]], dtype=dtype))

    def test_bitwise_equal_to_the_bool_product_on_random_weights(self) -> None:
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(64, 32, 3, 3, generator=generator)
        mask = torch.rand(weight.shape, generator=generator) > 0.9
        assert torch.equal(apply_mask(weight, mask), weight * mask)
        assert torch.equal(apply_mask(weight, mask), torch.where(mask, weight, weight * 0.0))

    @pytest.mark.parametrize(
        ("tensor", "mask"),
        [
            (torch.tensor([1.5, -2.0, 3.0]), torch.tensor([1.0, 0.0, 0.5])),  # a float mask
            (torch.tensor([1.5, -2.0, 3.0]), torch.tensor([1, 0, 1], dtype=torch.float16)),
            (torch.tensor([3, -2, 7], dtype=torch.int8), torch.tensor([True, False, True])),
            (torch.tensor([True, True, False]), torch.tensor([True, False, True])),
        ],
    )
    def test_other_dtypes_multiply_as_they_are(
        self, tensor: torch.Tensor, mask: torch.Tensor
    ) -> None:
        out = apply_mask(tensor, mask)
        expected = tensor * mask
        assert out.dtype == expected.dtype and out.shape == expected.shape
        assert torch.equal(out, expected)


def test_public_alias_holds_the_same_objects() -> None:
    import selfdamage.damage.masks as home
    import selfdamage.masks as alias

    assert alias.__all__ == home.__all__
    assert all(getattr(alias, name) is getattr(home, name) for name in home.__all__)
