"""Global channel selection maths: exact counts, caps, ties, the random part."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from selfdamage.damage.masks import num_to_prune
from selfdamage.damage.selection import global_channel_masks


class TestGlobalChannelMasks:
    @pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.5, 0.8])
    def test_exact_count_and_cap(self, ratio: float) -> None:
        gen = torch.Generator().manual_seed(0)
        scores = [torch.rand(n, generator=gen) * s for n, s in [(8, 1.0), (32, 100.0), (5, 0.01)]]
        keep = global_channel_masks(scores, ratio, max_channel_ratio=0.9)
        pruned = sum(int((~k).sum()) for k in keep)
        assert pruned == num_to_prune(45, ratio)
        for k in keep:
            assert int((~k).sum()) <= int(0.9 * k.numel()) and bool(k.any())

    def test_lowest_scores_go_first_across_groups(self) -> None:
        keep = global_channel_masks([torch.tensor([0.1, 5.0]), torch.tensor([0.2, 0.3])], 0.5)
        assert [k.tolist() for k in keep] == [[False, True], [False, True]]

    def test_cap_redirects_to_next_group(self) -> None:
        # Group 0 holds all the lowest scores, but may lose only half of its channels.
        keep = global_channel_masks([torch.zeros(4), torch.ones(4)], 0.5, max_channel_ratio=0.5)
        assert [int((~k).sum()) for k in keep] == [2, 2]

    def test_ties_are_deterministic_and_spread_evenly(self) -> None:
        sizes = [64, 64, 128, 256, 512]
        first = global_channel_masks([torch.ones(n) for n in sizes], 0.3)
        again = global_channel_masks([torch.ones(n) for n in sizes], 0.3)
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        for keep, n in zip(first, sizes):
            assert abs(int((~keep).sum()) - 0.3 * n) <= 1

    def test_random_part(self) -> None:
        scores = [torch.arange(10.0), torch.arange(10.0)]

        def draw(seed: int) -> list[Tensor]:
            gen = torch.Generator().manual_seed(seed)
            return global_channel_masks(scores, 0.5, random_ratio=0.2, generator=gen)

        a, b, c = draw(1), draw(1), draw(2)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert sum(int((~k).sum()) for k in a) == 10
        # The 6 importance picks are the lowest scores; the rest are random.
        assert all(not k[:3].any() for k in a)
        assert any(not torch.equal(x, y) for x, y in zip(a, c))

    @pytest.mark.parametrize(
        ("prune_ratio", "random_ratio", "by_score"),
        # n = 10: round(10 * prune_ratio) pruned in all, round(10 * random_ratio) of them at
        # random, the rest by score. (0.14, 0.05): 1 in all, 1 at random, 0 by score;
        # (0.26, 0.14): 3 in all, 1 at random, 2 by score.
        [(0.14, 0.05, 0), (0.26, 0.14, 2)],
    )
    def test_random_part_is_round_random_ratio_n_of_the_total(
        self, prune_ratio: float, random_ratio: float, by_score: int
    ) -> None:
        scores = [torch.arange(1.0, 6.0), torch.arange(6.0, 11.0)]  # channel i scores i + 1
        draws = set()
        for seed in range(20):
            gen = torch.Generator().manual_seed(seed)
            keep = global_channel_masks(
                scores, prune_ratio, random_ratio=random_ratio, generator=gen
            )
            pruned = set((~torch.cat(keep)).nonzero().flatten().tolist())
            assert len(pruned) == round(prune_ratio * 10)
            assert set(range(by_score)) <= pruned  # the lowest, every time
            draws.add(frozenset(pruned - set(range(by_score))))
        assert all(len(d) == 1 for d in draws)  # one at random, among the channels kept
        assert len(draws) > 1  # ...and not the same one for every seed

    def test_nan_counts_as_zero(self) -> None:
        keep = global_channel_masks([torch.tensor([float("nan"), 1.0, 2.0, 3.0])], 0.25)
        assert keep[0].tolist() == [False, True, True, True]

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"prune_ratio": 1.0}, "prune_ratio"),
            ({"prune_ratio": 0.5, "max_channel_ratio": 0.0}, "max_channel_ratio"),
            ({"prune_ratio": 0.5, "random_ratio": 0.6}, "random_ratio"),
            ({"prune_ratio": 0.8, "max_channel_ratio": 0.5}, "allows at most"),
        ],
    )
    def test_errors(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            global_channel_masks([torch.ones(10)], **kwargs)
