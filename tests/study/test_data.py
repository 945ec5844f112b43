from __future__ import annotations

import pytest
import torch

from selfdamage.study.data import DATASETS, load_data
from tests.study.helpers import needs_data


@needs_data
class TestFashionMNIST:
    def test_splits_shapes_and_stats(self) -> None:
        data = load_data("fashion-mnist", None, False, three_channels=False)
        assert data.train_images.shape == (60_000, 1, 28, 28)
        assert data.test_images.shape == (10_000, 1, 28, 28)
        assert data.train_images.dtype == torch.uint8 and data.num_classes == 10
        assert data.image_shape == (1, 28, 28)
        # The normalization constants, computed another way: from the pixels themselves.
        pixels = data.train_images.double() / 255
        assert data.mean[0] == pytest.approx(float(pixels.mean()), abs=5e-4)
        assert data.std[0] == pytest.approx(float(pixels.std()), abs=5e-4)

    def test_three_channels_repeat_the_grey_one(self) -> None:
        grey = load_data("fashion-mnist", None, False, three_channels=False)
        rgb = load_data("fashion-mnist", None, False, three_channels=True)
        assert rgb.image_shape == (3, 28, 28)
        for c in range(3):
            assert torch.equal(rgb.test_images[:, c], grey.test_images[:, 0])
        assert rgb.mean == grey.mean * 3 and rgb.std == grey.std * 3


@pytest.mark.parametrize("dataset", [d for d in DATASETS if d.startswith("cifar")])
def test_cifar_needs_a_folder(dataset: str) -> None:
    with pytest.raises(ValueError, match=f"dataset='{dataset}' needs data_dir"):
        load_data(dataset, None, False, three_channels=False)
