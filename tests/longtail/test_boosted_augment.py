"""Boosted RandAugment against the authors' mapping and operations (MediaBrain-SJTU/BCL).

Each reference value is written from the authors' code: ``data/memoboosted_cifar100.py:
memoboosted_CIFAR100.__getitem__`` (score to magnitude and probability),
``data/randaug.py: augment_list`` (pool, ranges), ``RandAugment_prob.__call__`` (draw and
apply) and the operation functions (the PIL calls).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from selfdamage.data import ImageTensorDataset
from selfdamage.longtail import boosted_augment
from selfdamage.longtail._rand_augment import RAND_AUGMENT_OPS, RandAugmentOp, op_value
from selfdamage.longtail.boosted_augment import (
    BoostedRandAugment,
    MomentumBoostedDataset,
    bcl_base_transform,
    boost_strength,
)
from selfdamage.longtail.momentum_loss import MomentumLoss


class FixedRandom(random.Random):
    """A generator whose ``random()`` returns a fixed value (to pin the sign draws)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def _image(mode: str = "RGB", size: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))


def _op(name: str) -> RandAugmentOp:
    return next(op for op in RAND_AUGMENT_OPS if op.name == name)


class TestStrength:
    @pytest.mark.parametrize(
        ("score", "magnitude"), [(0.0, 10.0), (0.25, 15.0), (0.5, 20.0), (1.0, 30.0)]
    )
    def test_one_op(self, score: float, magnitude: float) -> None:
        # memoboosted_CIFAR100.__getitem__, rand_k == 1: 10 + (30 - 10) * w, probability w
        assert boost_strength(score) == pytest.approx((magnitude, score))

    @pytest.mark.parametrize(("score", "draw"), [(0.0, 0.7), (0.4, 0.5), (1.0, 0.9)])
    def test_more_ops(self, score: float, draw: float) -> None:
        # rand_k > 1: 5 + (30 - 5) * w * np.random.rand(1)
        expected = (5 + 25 * score * draw, score)
        assert boost_strength(score, num_ops=2, draw=draw) == pytest.approx(expected)

    def test_max_magnitude(self) -> None:
        # --rand_strength 20: 10 + (20 - 10) * w
        assert BoostedRandAugment(max_magnitude=20).strength(0.5, random.Random(0)) == (15.0, 0.5)


class TestPool:
    def test_the_authors_ranges(self) -> None:
        # data/randaug.py: augment_list, in order
        assert [(op.name, op.low, op.high) for op in RAND_AUGMENT_OPS] == [
            ("ShearX", 0.0, 0.6),
            ("ShearY", 0.0, 0.6),
            ("TranslateX", 0.0, 0.66),
            ("TranslateY", 0.0, 0.66),
            ("Rotate", 0.0, 60.0),
            ("AutoContrast", 0.0, 1.0),
            ("Invert", 0.0, 1.0),
            ("Equalize", 0.0, 1.0),
            ("Solarize", 0.0, 110.0),
            ("Posterize", 4.0, 8.0),
            ("Contrast", 0.1, 1.9),
            ("Color", 0.1, 1.9),
            ("Brightness", 0.1, 1.9),
            ("Sharpness", 0.1, 1.9),
            ("Cutout", 0.0, 0.4),
        ]

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("ShearX", 0.4),
            ("TranslateY", 0.44),
            ("Rotate", 40.0),
            ("Solarize", 220 / 3),
            ("Posterize", 4 + 8 / 3),
            ("Contrast", 1.3),
            ("Cutout", 0.8 / 3),
        ],
    )
    def test_value_at_magnitude_20(self, name: str, value: float) -> None:
        # RandAugment_prob.__call__: m / 30 * (max - min) + min
        assert op_value(_op(name), 20) == pytest.approx(value)

    @pytest.mark.parametrize("mode", ["RGB", "L"])
    @pytest.mark.parametrize("sign", [1, -1])
    def test_operations_are_the_authors_pil_calls(self, mode: str, sign: int) -> None:
        # the functions of data/randaug.py; their sign flips when random.random() > 0.5
        image = _image(mode)
        rng = FixedRandom(0.9 if sign == -1 else 0.1)
        affine = Image.Transform.AFFINE
        expected = {
            "ShearX": image.transform(image.size, affine, (1, sign * 0.4, 0, 0, 1, 0)),
            "ShearY": image.transform(image.size, affine, (1, 0, 0, sign * 0.4, 1, 0)),
            "TranslateX": image.transform(image.size, affine, (1, 0, sign * 0.44 * 32, 0, 1, 0)),
            "TranslateY": image.transform(image.size, affine, (1, 0, 0, 0, 1, sign * 0.44 * 32)),
            "Rotate": image.rotate(sign * 40.0),
            "AutoContrast": ImageOps.autocontrast(image),
            "Invert": ImageOps.invert(image),
            "Equalize": ImageOps.equalize(image),
            "Solarize": ImageOps.solarize(image, 220 / 3),
            "Posterize": ImageOps.posterize(image, 6),
        }
        for name, reference in expected.items():
            got = _op(name).apply(image, op_value(_op(name), 20), rng)
            assert np.array_equal(np.asarray(got), np.asarray(reference)), name

    @pytest.mark.parametrize(("mode", "fill"), [("RGB", (125, 123, 114)), ("L", 123)])
    def test_cutout(self, mode: str, fill: Any) -> None:
        # Cutout/CutoutAbs: v * width; corner int(max(0, c - v/2)) with c = w + (1 - w) * U
        image = Image.new(mode, (32, 32), 0)
        got = _op("Cutout").apply(image, 0.25, FixedRandom(0.5))  # side 8, centre 16.5
        x0 = int(16.5 - 4)  # 12; rectangle (12, 12, 20, 20), both ends included
        expected = image.copy()
        expected.paste(fill, (x0, x0, x0 + 9, x0 + 9))
        assert np.array_equal(np.asarray(got), np.asarray(expected))
        assert _op("Cutout").apply(image, 0.0, FixedRandom(0.5)) is image


class Recorder:
    """Replaces every operation of the pool by one that records its name and value."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def pool(self) -> tuple[RandAugmentOp, ...]:
        def record(name: str) -> Any:
            return lambda image, value, rng: self.calls.append((name, value)) or image

        return tuple(op._replace(apply=record(op.name)) for op in RAND_AUGMENT_OPS)


class TestBoostedRandAugment:
    @pytest.mark.parametrize(("num_ops", "score"), [(1, 1.0), (1, 0.3), (3, 0.6)])
    def test_number_and_magnitude_of_operations(
        self, monkeypatch: pytest.MonkeyPatch, num_ops: int, score: float
    ) -> None:
        # RandAugment_prob.__call__: k ops with replacement, each applied with probability w
        recorder = Recorder()
        monkeypatch.setattr(boosted_augment, "RAND_AUGMENT_OPS", recorder.pool())
        augment, rng, image, trials = BoostedRandAugment(num_ops), random.Random(0), _image(), 3000
        for _ in range(trials):
            magnitude, probability = augment.strength(score, rng)
            before = len(recorder.calls)
            augment(image, magnitude, probability, rng)
            for name, value in recorder.calls[before:]:
                assert value == pytest.approx(op_value(_op(name), magnitude))
        assert len(recorder.calls) / trials == pytest.approx(num_ops * score, abs=0.06)
        assert len(Counter(name for name, _ in recorder.calls)) == len(RAND_AUGMENT_OPS)

    def test_score_zero_leaves_the_image(self) -> None:
        # before the first update the authors' momentum weight is 0: no operation applies
        image, augment = _image(), BoostedRandAugment(num_ops=4)
        assert augment(image, 10.0, 0.0, random.Random(0)) is image

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"num_ops": 0}, "num_ops must be >= 1, got num_ops=0"),
            (
                {"max_magnitude": 31},
                r"max_magnitude must be in \[10.0, 30.0\], got max_magnitude=31",
            ),
            ({"num_ops": 2, "max_magnitude": 4}, r"in \[5.0, 30.0\]"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            BoostedRandAugment(**kwargs)


def _tensor_dataset(n: int = 6, mode: str = "L") -> ImageTensorDataset:
    gen = torch.Generator().manual_seed(0)
    shape = (n, 28, 28) if mode == "L" else (n, 28, 28, 3)
    return ImageTensorDataset(
        torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8), list(range(n))
    )


def _scored(data: MomentumBoostedDataset, losses: list[float]) -> MomentumLoss:
    tracker = MomentumLoss(len(data))
    tracker.update(torch.arange(len(data)), torch.tensor(losses))
    tracker.step()
    data.update_scores(tracker)
    return tracker


class TestMomentumBoostedDataset:
    def test_study_data_in_memory(self) -> None:
        data = MomentumBoostedDataset(_tensor_dataset(), base=bcl_base_transform(28), seed=0)
        views, label, index = data[3]
        assert (len(views), views[0].shape, label, index) == (2, (1, 28, 28), 3, 3)

    def test_image_folder(self, tmp_path: Path) -> None:
        for k, name in enumerate(["cat", "cat", "dog"]):
            (tmp_path / name).mkdir(exist_ok=True)
            _image("RGB", 40, seed=k).save(tmp_path / name / f"{k}.png")
        data = MomentumBoostedDataset(
            ImageFolder(str(tmp_path)), base=bcl_base_transform(32), seed=1
        )
        _scored(data, [1.0, 2.0, 3.0])
        views, label, index = data[2]
        assert (views[0].shape, label, index) == ((3, 32, 32), 1, 2)

    def test_seeded_views_depend_on_seed_epoch_and_index_only(self) -> None:
        def item(data: MomentumBoostedDataset, i: int) -> torch.Tensor:
            return torch.stack(data[i][0])

        data = MomentumBoostedDataset(
            _tensor_dataset(mode="RGB"), base=bcl_base_transform(28), seed=5
        )
        _scored(data, [1.0, 5.0, 2.0, 6.0, 1.0, 3.0])
        first = [item(data, i) for i in range(6)]
        torch.manual_seed(123)  # the global generator does not matter
        assert all(torch.equal(item(data, i), first[i]) for i in reversed(range(6)))
        assert not torch.equal(first[0][0], first[0][1])  # two different views
        other = MomentumBoostedDataset(
            _tensor_dataset(mode="RGB"), base=bcl_base_transform(28), seed=6
        )
        tracker = _scored(data, [1.0, 5.0, 2.0, 6.0, 1.0, 3.0])
        other.update_scores(tracker)  # same scores, other seed
        assert not torch.equal(item(other, 0), first[0])
        tracker.update(torch.arange(6), torch.tensor([1.0, 5.0, 2.0, 6.0, 1.0, 3.0]))
        tracker.step()
        data.update_scores(tracker)  # same scores, epoch 2
        assert torch.equal(data.scores, other.scores)
        assert not torch.equal(item(data, 0), first[0])

    def test_workers_give_the_same_batches(self) -> None:
        data = MomentumBoostedDataset(_tensor_dataset(8), base=bcl_base_transform(28), seed=0)
        _scored(data, [float(i) for i in range(8)])
        batches = [
            [torch.cat(b[0]) for b in DataLoader(data, batch_size=4, num_workers=workers)]
            for workers in (0, 2)
        ]
        assert all(torch.equal(a, b) for a, b in zip(*batches))

    def test_persistent_workers_see_new_scores(self) -> None:
        data = ScoreSpy(_tensor_dataset(4))
        loader = DataLoader(data, batch_size=4, num_workers=1, persistent_workers=True)
        assert next(iter(loader)).tolist() == [0.0] * 4
        _scored(data, [1.0, 2.0, 3.0, 6.0])
        assert next(iter(loader)).tolist() == pytest.approx([1 / 6, 1 / 3, 0.5, 1.0])

    def test_errors(self) -> None:
        with pytest.raises(ValueError, match="num_views must be >= 1, got num_views=0"):
            MomentumBoostedDataset(_tensor_dataset(), num_views=0)
        with pytest.raises(TypeError, match="base must be callable or None, got base=3"):
            MomentumBoostedDataset(_tensor_dataset(), base=3)  # type: ignore[arg-type]
        data = MomentumBoostedDataset(_tensor_dataset())
        with pytest.raises(ValueError, match="got a MomentumLoss of num_samples=5"):
            data.update_scores(MomentumLoss(5))
        tensors = MomentumBoostedDataset(
            torch.utils.data.TensorDataset(torch.zeros(2, 3), torch.zeros(2))
        )
        with pytest.raises(TypeError, match=r"needs PIL images.*item 0 holds a Tensor"):
            tensors[0]


class ScoreSpy(MomentumBoostedDataset):
    """Serves the score the worker reads instead of views."""

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        return float(self.scores[index])
