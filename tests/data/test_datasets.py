from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from selfdamage.data import (
    FASHION_MNIST_DIRS,
    ImageTensorDataset,
    TwoViewDataset,
    load_cifar,
    load_fashion_mnist,
    small_grayscale_transform,
)
from selfdamage.data import datasets as datasets_module

# Three 2x3 images with pixel values 0..17, and their labels, as raw IDX bytes:
# two zero bytes, type 0x08 (unsigned byte), number of dimensions, big-endian sizes.
IMAGES_IDX = (
    b"\x00\x00\x08\x03" + b"\x00\x00\x00\x03\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(range(18))
)
LABELS_IDX = b"\x00\x00\x08\x01" + b"\x00\x00\x00\x03" + bytes([7, 0, 9])


def _write(directory: Path, prefix: str, *, gzipped: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for kind, data in (("images-idx3", IMAGES_IDX), ("labels-idx1", LABELS_IDX)):
        name = f"{prefix}-{kind}-ubyte"
        if gzipped:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


class TestLoadFashionMnist:
    @pytest.mark.parametrize("gzipped", [True, False])
    def test_reads_hand_made_idx_files(self, tmp_path: Path, gzipped: bool) -> None:
        _write(tmp_path, "train", gzipped=gzipped)
        images, labels = load_fashion_mnist(tmp_path)
        assert images.dtype == torch.uint8
        assert images.shape == (3, 2, 3)
        assert images[1].tolist() == [[6, 7, 8], [9, 10, 11]]
        assert labels.dtype == torch.int64
        assert labels.tolist() == [7, 0, 9]

    def test_test_split_and_torchvision_layout(self, tmp_path: Path) -> None:
        _write(tmp_path / "FashionMNIST" / "raw", "t10k", gzipped=True)
        images, labels = load_fashion_mnist(str(tmp_path), train=False)
        assert images.shape == (3, 2, 3)
        assert labels.tolist() == [7, 0, 9]

    def test_missing_files_name_searched_paths_and_fix(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError) as info:
            load_fashion_mnist(tmp_path)
        message = str(info.value)
        assert str(tmp_path) in message
        assert str(tmp_path / "FashionMNIST" / "raw") in message
        assert "train-images-idx3-ubyte" in message
        assert "apt-get install dataset-fashion-mnist" in message
        assert "download=True" in message

    def test_default_search_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        empty, full = tmp_path / "empty", tmp_path / "full"
        monkeypatch.setattr(datasets_module, "FASHION_MNIST_DIRS", (str(empty), str(full)))
        with pytest.raises(FileNotFoundError, match=rf"searched: {empty}, {full}\."):
            load_fashion_mnist()
        _write(full, "train", gzipped=True)
        assert load_fashion_mnist()[1].tolist() == [7, 0, 9]

    @pytest.mark.parametrize(
        "data",
        [
            b"\x00\x00\x0d\x03" + IMAGES_IDX[4:],  # type 0x0D (float), not unsigned byte
            IMAGES_IDX[:-1],  # one pixel short
            IMAGES_IDX[:9],  # header cut inside the sizes
        ],
    )
    def test_corrupt_file(self, tmp_path: Path, data: bytes) -> None:
        _write(tmp_path, "train", gzipped=False)
        (tmp_path / "train-images-idx3-ubyte").write_bytes(data)
        with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*re-download"):
            load_fashion_mnist(tmp_path)

    def test_images_and_labels_disagree(self, tmp_path: Path) -> None:
        _write(tmp_path, "train", gzipped=False)
        labels = b"\x00\x00\x08\x01" + b"\x00\x00\x00\x02" + bytes([1, 2])
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels)
        with pytest.raises(ValueError, match=r"do not match"):
            load_fashion_mnist(tmp_path)

    @pytest.mark.skipif(
        not Path(FASHION_MNIST_DIRS[0]).is_dir(),
        reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
    )
    def test_real_debian_files(self) -> None:
        images, labels = load_fashion_mnist(FASHION_MNIST_DIRS[0])
        assert images.shape == (60000, 28, 28)
        assert np.bincount(labels.numpy()).tolist() == [6000] * 10
        test_images, test_labels = load_fashion_mnist(FASHION_MNIST_DIRS[0], train=False)
        assert test_images.shape == (10000, 28, 28)
        # The first test images are an ankle boot, a pullover and a trouser.
        assert test_labels[:3].tolist() == [9, 2, 1]


def _fake_cifar(root: Path, folder: str, files: list[str], label_key: str) -> None:
    """CIFAR-style pickles: 2 images per file, R=1, G=2, B=3 everywhere, label = file no."""
    (root / folder).mkdir(parents=True)
    image = np.concatenate([np.full(1024, value, dtype=np.uint8) for value in (1, 2, 3)])
    for number, name in enumerate(files):
        entry = {"data": np.stack([image, image]), label_key: [number, number]}
        (root / folder / name).write_bytes(pickle.dumps(entry))


class TestLoadCifar:
    def test_missing_files(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError) as info:
            load_cifar(tmp_path, "cifar100")
        message = str(info.value)
        assert str(tmp_path / "cifar-100-python") in message
        assert "download=True" in message
        assert "torchvision.datasets.CIFAR100(" in message

    def test_unknown_name(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"\['cifar10', 'cifar100'\].*'cifar1000'"):
            load_cifar(tmp_path, "cifar1000")  # type: ignore[arg-type]

    @pytest.mark.parametrize("train", [True, False])
    def test_fake_cifar10(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, train: bool
    ) -> None:
        # The fake files cannot match torchvision's md5 sums; skip that check only.
        monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a: True)
        batches = [f"data_batch_{i}" for i in range(1, 6)]
        _fake_cifar(tmp_path, "cifar-10-batches-py", [*batches, "test_batch"], "labels")
        meta = {"label_names": [f"class{i}" for i in range(10)]}
        (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps(meta))
        images, labels = load_cifar(tmp_path, train=train)
        assert images.dtype == torch.uint8
        assert images.shape == ((10 if train else 2), 32, 32, 3)
        assert images[0, 5, 7].tolist() == [1, 2, 3]  # channels last
        expected = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] if train else [5, 5]
        assert labels.tolist() == expected

    def test_fake_cifar100_fine_labels(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a: True)
        _fake_cifar(tmp_path, "cifar-100-python", ["train", "test"], "fine_labels")
        meta = {"fine_label_names": [f"class{i}" for i in range(100)]}
        (tmp_path / "cifar-100-python" / "meta").write_bytes(pickle.dumps(meta))
        images, labels = load_cifar(tmp_path, "cifar100", train=False)
        assert images.shape == (2, 32, 32, 3)
        assert labels.tolist() == [1, 1]


class TestImageTensorDataset:
    def test_grayscale_items_are_pil_images(self) -> None:
        images = torch.arange(2 * 4 * 5, dtype=torch.uint8).reshape(2, 4, 5)
        dataset = ImageTensorDataset(images, torch.tensor([3, 8]))
        image, label = dataset[1]
        assert isinstance(image, Image.Image)
        assert image.mode == "L"
        assert image.size == (5, 4)  # PIL: (width, height)
        assert np.array_equal(np.asarray(image), images[1].numpy())
        assert label == 8
        assert len(dataset) == 2
        assert dataset.targets.tolist() == [3, 8]

    def test_colour_items_and_transform(self) -> None:
        images = torch.zeros(3, 4, 4, 3, dtype=torch.uint8)
        images[..., 2] = 200
        dataset = ImageTensorDataset(images, [0, 1, 2], transform=lambda im: im.getpixel((0, 0)))
        assert dataset[2] == ((0, 0, 200), 2)

    @pytest.mark.parametrize(
        ("images", "labels", "error", "pattern"),
        [
            (torch.zeros(2, 4, 4), [0, 1], TypeError, r"uint8 tensor"),
            (np.zeros((2, 4, 4), dtype=np.uint8), [0, 1], TypeError, r"uint8 tensor"),
            (torch.zeros(2, 4, 4, 2, dtype=torch.uint8), [0, 1], ValueError, r"\(N, H, W, 3\)"),
            (torch.zeros(2, 4, 4, dtype=torch.uint8), [0, 1, 2], ValueError, r"shape \(2,\)"),
        ],
    )
    def test_bad_input(
        self, images: object, labels: list[int], error: type[Exception], pattern: str
    ) -> None:
        with pytest.raises(error, match=pattern):
            ImageTensorDataset(images, labels)  # type: ignore[arg-type]


class TestTwoViewDataset:
    def test_two_views_and_label_through_a_loader(self) -> None:
        images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
        pairs = TwoViewDataset(ImageTensorDataset(images, range(6)), small_grayscale_transform())
        view0, view1, label = pairs[4]
        assert view0.shape == view1.shape == (3, 28, 28)
        assert label == 4
        batch0, batch1, labels = next(iter(DataLoader(pairs, batch_size=6)))
        assert batch0.shape == batch1.shape == (6, 3, 28, 28)
        assert labels.tolist() == list(range(6))

    def test_transform_with_one_view(self) -> None:
        images = torch.zeros(2, 28, 28, dtype=torch.uint8)
        pairs = TwoViewDataset(ImageTensorDataset(images, [0, 1]), lambda image: [image])
        with pytest.raises(ValueError, match=r"two views, got 1 views"):
            pairs[0]

    def test_transform_not_callable(self) -> None:
        with pytest.raises(TypeError, match=r"transform must be callable"):
            TwoViewDataset([], "SimCLRTransform")  # type: ignore[arg-type]
