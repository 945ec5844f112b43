"""Your own images in the study: loading, sizes, statistics, streaming, and whole runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import selfdamage.data.image_datasets as image_datasets
from selfdamage.study import StudyConfig, format_table, run_study, runner
from selfdamage.study.own_data import DecodedImages, image_stats, load_own_data, read_samples

from .helpers import TINY
from .images import write_folder, write_image, write_lists, write_truncated

TRAIN = {"a": 12, "b": 6, "c": 3}  # a natural long tail, ratio 4
TEST = {"a": 2, "b": 2, "c": 2}


def _folder(tmp_path: Path, **kwargs: Any) -> StudyConfig:
    options: dict[str, Any] = {"dataset": "folder", "data_dir": str(tmp_path), "workers": 0}
    return StudyConfig(**(options | kwargs))


class TestLoad:
    def test_cached_images_decoded_as_written(self, tmp_path: Path) -> None:
        write_folder(tmp_path, TRAIN, TEST, size=(12, 10))
        data = load_own_data(_folder(tmp_path))
        assert isinstance(data.train_images, torch.Tensor)
        # Default size: the median shorter side (10); grayscale stays one channel.
        assert data.train_images.shape == (21, 1, 10, 10) and data.image_shape == (1, 10, 10)
        assert data.classes == ("a", "b", "c")
        assert data.train_labels.tolist() == [0] * 12 + [1] * 6 + [2] * 3
        # Image i of class c has every pixel 10 * c + i (tests/study/images.py).
        assert int(data.train_images[13].unique()) == 10 * 1 + 1
        assert data.view_options["blur_prob"] == 0.0  # small images: no blur

    def test_warnings_point_at_the_caller(self, tmp_path: Path) -> None:
        write_folder(tmp_path, TRAIN, TEST)
        (tmp_path / "train" / "a" / "notes.txt").write_text("x")
        with pytest.warns(UserWarning, match="skipped 1 files") as got:
            read_samples(_folder(tmp_path))
        with pytest.warns(UserWarning, match="skipped 1 files") as loading:
            load_own_data(_folder(tmp_path))
        assert [w.filename for w in [*got, *loading]] == [__file__] * 2

    def test_default_size_is_capped(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"a": 2, "b": 2, "c": 2}, TEST, size=(100, 80))
        assert load_own_data(_folder(tmp_path)).image_shape == (1, 64, 64)
        assert load_own_data(_folder(tmp_path, image_size=20)).image_shape == (1, 20, 20)

    def test_stats_by_hand(self, tmp_path: Path) -> None:
        # Two images of value 0 and two of 255, in RGB: mean 0.5 and std 0.5 per channel.
        for name, value in (("a0", 0), ("a1", 0), ("b0", 255), ("b1", 255)):
            write_image(tmp_path / "train" / name[0] / f"{name}.png", value, mode="RGB")
            write_image(tmp_path / "test" / name[0] / f"{name}.png", value, mode="RGB")
        data = load_own_data(_folder(tmp_path, groups="counts", group_thresholds=(1, 1)))
        assert data.image_shape == (3, 10, 10)
        assert data.mean == (0.5, 0.5, 0.5) and data.std == (0.5, 0.5, 0.5)
        given = load_own_data(_folder(tmp_path, mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0)))
        assert given.mean == (0.1, 0.2, 0.3)
        with pytest.raises(ValueError, match=r"one value per channel of the images \(3\)"):
            load_own_data(_folder(tmp_path, mean=(0.1,), std=(1.0,)))

    def test_image_stats_sample_is_seeded(self) -> None:
        images = torch.randint(0, 256, (50, 2, 3, 3), dtype=torch.uint8)
        mean, std = image_stats(images, seed=0, sample=50)
        pixels = images.double().div(255).transpose(0, 1).reshape(2, -1)
        assert mean == pytest.approx(pixels.mean(1).tolist(), abs=1e-4)
        assert std == pytest.approx(pixels.std(1, unbiased=False).tolist(), abs=1e-4)
        assert image_stats(images, seed=3, sample=10) == image_stats(images, seed=3, sample=10)

    def test_gray_images_get_three_channels_for_resnet18(self, tmp_path: Path) -> None:
        write_folder(tmp_path, TRAIN, TEST)
        data = load_own_data(_folder(tmp_path, backbone="resnet18"))
        assert data.image_shape == (3, 10, 10)
        image = data.train_images[5]  # type: ignore[index]
        assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])

    def test_modes_differ_between_splits(self, tmp_path: Path) -> None:
        write_folder(tmp_path / "gray", TRAIN, TEST, mode="L")
        write_folder(tmp_path / "rgb", TRAIN, TEST, mode="RGB")
        (tmp_path / "gray" / "test").rename(tmp_path / "gray" / "old-test")
        (tmp_path / "rgb" / "test").rename(tmp_path / "gray" / "test")
        with pytest.raises(ValueError, match="--image-mode RGB"):
            load_own_data(_folder(tmp_path / "gray"))
        data = load_own_data(_folder(tmp_path / "gray", image_mode="RGB"))
        assert data.image_shape == (3, 10, 10)

    def test_list_files_with_the_default_image_root(self, tmp_path: Path) -> None:
        train, test = write_lists(tmp_path, {0: 4, 1: 2}, {0: 1, 1: 1})
        config = StudyConfig(dataset="list", train_list=str(train), test_list=str(test),
                             image_root=str(tmp_path / "images"))  # fmt: skip
        samples, _ = read_samples(config)
        assert samples.class_counts().tolist() == [4, 2]
        # Without image_root, paths are relative to the training list's folder.
        moved = tmp_path / "images" / "train.txt"
        moved.write_text(train.read_text())
        config = StudyConfig(dataset="list", train_list=str(moved), test_list=str(test))
        assert len(read_samples(config)[1]) == 2
        config = StudyConfig(dataset="list", train_list=str(train), test_list=str(test))
        with pytest.raises(FileNotFoundError, match=r"6 of the 6 images listed in .*train\.txt"):
            read_samples(config)

    def test_list_labels_the_training_list_lacks_are_no_classes(self, tmp_path: Path) -> None:
        # Labels 0, 3, 5: the study's classes are those three, ids in label order (as
        # before lists kept their labels), and the test list is read with them.
        train, test = write_lists(tmp_path, {5: 2, 0: 3, 3: 2}, {3: 1, 0: 1, 5: 2})
        config = StudyConfig(dataset="list", train_list=str(train), test_list=str(test),
                             image_root=str(tmp_path / "images"))  # fmt: skip
        train_samples, test_samples = read_samples(config)
        assert train_samples.classes == test_samples.classes == ("0", "3", "5")
        assert train_samples.labels.tolist() == [2, 2, 0, 0, 0, 1, 1]
        assert test_samples.labels.tolist() == [1, 0, 2, 2]


class TestStreaming:
    def test_a_set_over_the_cache_limit_streams(self, tmp_path: Path) -> None:
        # 27 + 6 RGB images of 128 x 128: 1.6 MiB decoded, over a 1 MiB cache.
        write_folder(tmp_path, {"a": 9, "b": 9, "c": 9}, TEST, mode="RGB", size=(128, 128))
        streamed = load_own_data(_folder(tmp_path, cache_mb=1, image_size=128))
        cached = load_own_data(_folder(tmp_path, cache_mb=2, image_size=128))
        assert isinstance(streamed.train_images, DecodedImages)
        assert isinstance(cached.train_images, torch.Tensor)
        assert streamed.mean == cached.mean and streamed.std == cached.std
        batches = list(streamed.train_images.batches([26, 0, 5], 2))
        assert [len(b) for b in batches] == [2, 1]
        assert torch.equal(torch.cat(batches), cached.train_images[[26, 0, 5]])

    def test_a_batch_reads_only_its_images(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write_folder(tmp_path, TRAIN, TEST)
        train, _ = read_samples(_folder(tmp_path))
        opened: list[str] = []
        real = image_datasets.open_image

        def counting(path: str, mode: str) -> Any:
            opened.append(path)
            return real(path, mode)

        monkeypatch.setattr(image_datasets, "open_image", counting)
        images = DecodedImages(train, 8, "L", workers=0)
        first = next(images.batches(range(len(train)), 4))
        assert first.shape == (4, 1, 8, 8) and len(opened) == 4


class TestErrorsBeforeTraining:
    def test_class_with_one_training_image(self, tmp_path: Path) -> None:
        write_folder(tmp_path / "data", {"a": 5, "b": 1}, {"a": 1, "b": 1})
        out = tmp_path / "out"
        with pytest.raises(ValueError, match=r"fewer than 2 training images .*: b \(1\)"):
            run_study(_folder(tmp_path / "data", out_dir=str(out), **TINY))
        assert not list((out / "checkpoints").glob("*.pt"))

    def test_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="nowhere/train is not a folder"):
            run_study(_folder(tmp_path / "nowhere", out_dir=str(tmp_path / "out")))

    def test_training_class_without_test_images(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        train, test = write_lists(tmp_path, {0: 4, 1: 4, 2: 4}, {0: 1, 1: 1})  # no test 2
        config = StudyConfig(
            dataset="list", train_list=str(train), test_list=str(test),
            image_root=str(tmp_path / "images"), out_dir=str(tmp_path / "out"), **_RUN,
        )  # fmt: skip
        monkeypatch.setattr(runner, "run_one", _no_training)
        with pytest.raises(ValueError, match=r"classes \['2'\] are in .*train\.txt but not in "):
            run_study(config)

    @pytest.mark.parametrize(("cache_mb", "workers"), [(0, 0), (0, 2), (2048, 0)])
    def test_truncated_image(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_mb: int, workers: int
    ) -> None:
        # Streamed (cache_mb=0) or decoded into memory; read here or by worker processes.
        write_folder(tmp_path / "data", TRAIN, TEST, mode="RGB", size=(32, 32))
        cut = write_truncated(tmp_path / "data" / "test" / "b" / "cut.png")
        options = _RUN | {"cache_mb": cache_mb, "workers": workers}
        config = _folder(tmp_path / "data", out_dir=str(tmp_path / "out"), **options)
        monkeypatch.setattr(runner, "run_one", _no_training)
        with pytest.raises(ValueError) as error:
            run_study(config)
        assert str(error.value) == (
            f"{cut} is not a readable image (image file is truncated); remove or replace it."
        )  # the message alone, not a worker's traceback


def _no_training(*args: Any) -> None:
    raise AssertionError("a run started training")


_RUN = TINY | {"batch_size": 8, "epochs": 1, "max_steps": 1, "probe_shots": 2, "workers": 0}


class TestWholeStudy:
    def test_folder_natural_long_tail(self, tmp_path: Path) -> None:
        write_folder(tmp_path / "data", TRAIN, {"a": 4, "b": 2, "c": 1}, mode="RGB")
        config = _folder(
            tmp_path / "data", out_dir=str(tmp_path / "out"), balanced_reference=True, **_RUN
        )
        with pytest.warns(UserWarning, match="the balanced reference uses 3 per class") as got:
            results = run_study(config)
        assert {w.filename for w in got} == {__file__}  # every warning at the caller's line
        info = results["data"]
        assert info["profile"] == "natural" and info["class_counts"] == [12, 6, 3]
        assert info["imbalance_ratio"] == 4.0 and info["test_balanced"] is False
        assert info["groups"] == {"many": [0], "medium": [1], "few": [2]}
        assert [run["variant"] for run in results["runs"]] == ["baseline", "sdclr", "balanced"]
        for run in results["runs"]:
            assert run["class_counts"] == [12, 6, 3] and "balanced_accuracy" in run
        table = format_table(results)
        assert "natural long tail, as found; imbalance ratio 4.0" in table
        assert "balanced" in table.splitlines()[0]
        saved = json.loads((tmp_path / "out" / "results.json").read_text())
        assert saved["data"] == info

    def test_list_files_streamed_with_count_groups(self, tmp_path: Path) -> None:
        train, test = write_lists(tmp_path, {0: 12, 1: 6, 2: 3}, {0: 2, 1: 2, 2: 2})
        config = StudyConfig(
            dataset="list", train_list=str(train), test_list=str(test),
            image_root=str(tmp_path / "images"), cache_mb=0, groups="counts",
            group_thresholds=(10, 4), out_dir=str(tmp_path / "out"), **_RUN,
        )  # fmt: skip
        results = run_study(config)
        assert results["data"]["groups"] == {"many": [0], "medium": [1], "few": [2]}
        assert "Many > 10, Medium 4-10, Few < 4" in format_table(results)
        assert all("balanced_accuracy" not in run for run in results["runs"])
        # Resume reads the evaluated runs back.
        again = run_study(StudyConfig(**(config.to_dict() | {"resume": True})))
        assert again["summary"] == results["summary"]

    @pytest.mark.slow  # about 1-2 minutes: process start-up; .ci/run runs it
    def test_parallel_jobs_and_loader_workers_give_the_same_numbers(self, tmp_path: Path) -> None:
        # Runs in 2 processes, streaming through 2 decoding workers, against one process
        # decoding into memory: the same images in the same order, so the same numbers.
        write_folder(tmp_path / "data", TRAIN, TEST, mode="RGB")
        options = _RUN | {"threads": 1}
        one = run_study(_folder(tmp_path / "data", out_dir=str(tmp_path / "one"), **options))
        streamed = options | {"jobs": 2, "workers": 2, "cache_mb": 0}
        two = run_study(_folder(tmp_path / "data", out_dir=str(tmp_path / "two"), **streamed))
        assert [r["name"] for r in one["runs"]] == [r["name"] for r in two["runs"]]
        for a, b in zip(one["runs"], two["runs"]):
            a.pop("wall_time_s"), b.pop("wall_time_s")
            assert a == b, a["name"]
