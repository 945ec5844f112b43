from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from selfdamage import SelfDamagingWrapper
from selfdamage.evaluation import damage_scores


def _wrapper(prune_ratio: float) -> SelfDamagingWrapper:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return SelfDamagingWrapper(model, prune_ratio=prune_ratio)


def _loader(n: int = 10) -> DataLoader:
    inputs = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(inputs, torch.zeros(n, dtype=torch.int64)), batch_size=4)


class TestDamageScores:
    def test_unpruned_twin_scores_zero(self) -> None:
        # No pruning and twin BatchNorm state equal to the dense one: identical outputs.
        scores = damage_scores(_wrapper(0.0), _loader())
        assert scores.shape == (10,)
        assert scores.abs().max() < 1e-6

    def test_pruned_twin_scores_positive(self) -> None:
        scores = damage_scores(_wrapper(0.9), _loader())
        assert scores.shape == (10,)
        assert scores.dtype == torch.float32
        assert (scores > 0).all()
        assert (scores <= 2).all()

    def test_matches_the_definition(self) -> None:
        wrapper = _wrapper(0.5)
        inputs = torch.cat([x for x, _ in _loader()])
        wrapper.eval()
        with torch.no_grad():
            expected = 1 - F.cosine_similarity(wrapper(inputs), wrapper.damaged(inputs))
        wrapper.train()
        assert torch.allclose(damage_scores(wrapper, _loader()), expected, atol=1e-6)

    def test_bare_tensor_batches(self) -> None:
        wrapper = _wrapper(0.5)
        from_tuples = damage_scores(wrapper, _loader())
        from_tensors = damage_scores(wrapper, [x for x, _ in _loader()])
        assert torch.allclose(from_tuples, from_tensors)

    def test_restores_modes_and_leaves_running_stats_alone(self) -> None:
        wrapper = _wrapper(0.5).train()
        layers = list(wrapper.model.children())
        layers[2].eval()
        state = {k: v.clone() for k, v in wrapper.state_dict().items()}
        damage_scores(wrapper, _loader())
        assert wrapper.training and layers[1].training
        assert not layers[2].training
        for key, value in wrapper.state_dict().items():
            assert torch.equal(value, state[key]), key

    def test_not_a_wrapper(self) -> None:
        with pytest.raises(TypeError, match=r"SelfDamagingWrapper\(model\)"):
            damage_scores(nn.Linear(2, 2), _loader())  # type: ignore[arg-type]

    def test_empty_loader(self) -> None:
        with pytest.raises(ValueError, match=r"loader is empty"):
            damage_scores(_wrapper(0.5), [])
