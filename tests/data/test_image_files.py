from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from selfdamage.data import (
    ImageListDataset,
    ImageSamples,
    LongTailImageFolder,
    image_views,
    read_image_list,
    scan_image_folder,
    view_settings,
)
from selfdamage.data.image_datasets import ImageFileDataset, open_image
from selfdamage.data.image_files import check_splits, find_test_split, image_modes
from tests.study.images import write_folder, write_image, write_lists, write_truncated


class TestScanImageFolder:
    def test_classes_labels_and_counts(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"dog": 2, "cat": 3, "eel": 1}, {"cat": 1, "dog": 1, "eel": 1})
        samples = scan_image_folder(tmp_path, "train")
        assert samples.classes == ("cat", "dog", "eel")  # sorted names are the class ids
        assert samples.class_counts().tolist() == [3, 2, 1]
        assert samples.labels.tolist() == [0, 0, 0, 1, 1, 2]
        assert Path(samples.paths[3]) == tmp_path / "train" / "dog" / "0.png"

    def test_nested_folders_are_searched(self, tmp_path: Path) -> None:
        write_image(tmp_path / "train" / "cat" / "a.png", 1)
        write_image(tmp_path / "train" / "cat" / "deeper" / "b.png", 2)
        assert len(scan_image_folder(tmp_path)) == 2

    def test_non_images_are_skipped_with_a_count(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2, "dog": 2}, {"cat": 1, "dog": 1})
        (tmp_path / "train" / "cat" / "notes.txt").write_text("x")
        (tmp_path / "train" / "dog" / "labels.csv").write_text("x")
        (tmp_path / "train" / "dog" / "more.txt").write_text("x")
        with pytest.warns(UserWarning, match=r"skipped 3 files .*\(2 '\.txt', 1 '\.csv'\)") as got:
            samples = scan_image_folder(tmp_path)
        assert len(samples) == 4
        with pytest.warns(UserWarning, match="skipped 3 files") as through_dataset:
            LongTailImageFolder(tmp_path)
        assert [w.filename for w in [*got, *through_dataset]] == [__file__] * 2  # the caller's

    def test_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'train'} is not a folder"):
            scan_image_folder(tmp_path)

    def test_folder_without_classes(self, tmp_path: Path) -> None:
        (tmp_path / "train").mkdir()
        write_image(tmp_path / "train" / "loose.png", 0)
        with pytest.raises(ValueError, match="has no class folders"):
            scan_image_folder(tmp_path)

    def test_class_without_images(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2}, {"cat": 1})
        (tmp_path / "train" / "dog").mkdir()
        with pytest.raises(ValueError, match=r"class folder .*dog has no images"):
            scan_image_folder(tmp_path)

    def test_class_with_only_non_images(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2}, {"cat": 1})
        (tmp_path / "train" / "dog").mkdir()
        (tmp_path / "train" / "dog" / "readme.txt").write_text("x")
        with pytest.raises(ValueError, match=r"dog has no images"):
            scan_image_folder(tmp_path)


class TestScanImageFolderClasses:
    """``scan_image_folder(..., classes=...)``: a split read with another split's class ids."""

    def test_test_split_without_a_class_keeps_the_training_ids(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2, "dog": 2, "fox": 2}, {"cat": 1, "fox": 2})
        train = scan_image_folder(tmp_path, "train")
        assert train.classes == ("cat", "dog", "fox")
        # Alone, the test split numbers its own folders: fox is 1 there, 2 in train.
        alone = scan_image_folder(tmp_path, "test")
        assert alone.classes == ("cat", "fox") and alone.labels.tolist() == [0, 1, 1]
        test = scan_image_folder(tmp_path, "test", classes=train.classes)
        assert test.classes == ("cat", "dog", "fox")
        assert test.labels.tolist() == [0, 2, 2]  # dog is a class without images
        assert test.class_counts().tolist() == [1, 0, 2]
        assert [Path(p).parent.name for p in test.paths] == ["cat", "fox", "fox"]

    @pytest.mark.parametrize(
        "given",
        [["fox", "eel", "cat", "dog"], ("fox", "eel", "cat", "dog"),
         np.array(["fox", "eel", "cat", "dog"])],
        ids=["list", "tuple", "numpy"],
    )  # fmt: skip
    def test_ids_are_positions_in_classes(self, tmp_path: Path, given: Sequence[str]) -> None:
        write_folder(tmp_path, {"cat": 2, "dog": 1, "fox": 3}, {"cat": 1})
        samples = scan_image_folder(tmp_path, classes=given)
        assert samples.classes == ("fox", "eel", "cat", "dog")
        assert all(type(name) is str for name in samples.classes)
        # Items in class-id order: fox (0) x3, cat (2) x2, dog (3) x1; eel has no folder.
        assert samples.labels.tolist() == [0, 0, 0, 2, 2, 3]
        assert [Path(p).parent.name for p in samples.paths] == ["fox"] * 3 + ["cat"] * 2 + ["dog"]

    def test_folder_not_in_classes(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2, "dog": 2}, {"cat": 1, "eel": 1})
        folder = tmp_path / "test"
        with pytest.raises(
            ValueError,
            match=rf"{folder} has class folders that are not in classes: 'eel' \(split 'test', "
            r"classes='cat', 'dog'\)\. .* rename or remove the folder, or add the class",
        ):
            scan_image_folder(tmp_path, "test", classes=("cat", "dog"))

    def test_empty_class_folder_still_raises(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2, "dog": 2}, {"cat": 1})
        (tmp_path / "test" / "dog").mkdir()
        with pytest.raises(ValueError, match=r"class folder .*dog has no images"):
            scan_image_folder(tmp_path, "test", classes=("cat", "dog"))

    @pytest.mark.parametrize(
        "given", ["cat", [0, 1], {"cat", "dog"}, 3], ids=["str", "ints", "set", "int"]
    )
    def test_classes_must_be_names(self, tmp_path: Path, given: object) -> None:
        write_folder(tmp_path, {"cat": 2}, {"cat": 1})
        with pytest.raises(
            TypeError, match=r"classes must be the class names, e\.g\. train\.classes or"
        ):
            scan_image_folder(tmp_path, classes=given)  # type: ignore[arg-type]

    def test_repeated_class(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2}, {"cat": 1})
        with pytest.raises(ValueError, match=r"classes must be distinct, .*'cat' is named 2 times"):
            scan_image_folder(tmp_path, classes=("cat", "dog", "cat"))

    def test_no_classes(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2}, {"cat": 1})
        with pytest.raises(ValueError, match="classes must name at least one class"):
            scan_image_folder(tmp_path, classes=())


class TestFindTestSplit:
    @pytest.mark.parametrize("split", ["test", "val"])
    def test_test_or_val(self, tmp_path: Path, split: str) -> None:
        (tmp_path / split).mkdir()
        assert find_test_split(tmp_path) == split

    def test_neither(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="no test/ or val/ folder"):
            find_test_split(tmp_path)


class TestReadImageList:
    def test_paths_with_spaces_and_labels(self, tmp_path: Path) -> None:
        train, _ = write_lists(tmp_path, {0: 2, 3: 1}, {0: 1, 3: 1})
        samples = read_image_list(train, tmp_path / "images")
        # A label is its class id: labels 1 and 2 are classes without images.
        assert samples.classes == ("0", "1", "2", "3")
        assert samples.labels.tolist() == [0, 0, 3]
        assert samples.class_counts().tolist() == [2, 0, 0, 1]
        assert samples.paths[0] == str(tmp_path / "images" / "train" / "n000" / "img 0.png")

    def test_a_list_without_class_0_keeps_its_labels(self, tmp_path: Path) -> None:
        # test.txt: "test/n001/img 0.png 1", then two lines of label 2; no label 0.
        train, test = write_lists(tmp_path, {0: 2, 1: 2, 2: 2}, {1: 1, 2: 2})
        samples = read_image_list(test, tmp_path / "images")
        assert samples.labels.tolist() == [1, 2, 2]
        assert samples.classes == ("0", "1", "2")
        trained = read_image_list(train, tmp_path / "images")
        with_train = read_image_list(test, tmp_path / "images", classes=trained.classes)
        assert with_train.labels.tolist() == [1, 2, 2]

    def test_test_list_uses_the_training_classes(self, tmp_path: Path) -> None:
        _, test = write_lists(tmp_path, {1: 2, 5: 2}, {5: 1})
        samples = read_image_list(test, tmp_path / "images", classes=("1", "5"))
        assert samples.labels.tolist() == [1] and samples.classes == ("1", "5")
        # Without them, label 5 is class 5 of "0" .. "5".
        assert read_image_list(test, tmp_path / "images").labels.tolist() == [5]

    def test_classes_are_text(self, tmp_path: Path) -> None:
        _, test = write_lists(tmp_path, {0: 2, 1: 2}, {1: 1})
        with pytest.raises(TypeError, match=r"classes must be the labels as text, e\.g\. \('0'"):
            read_image_list(test, tmp_path / "images", classes=[0, 1])  # type: ignore[list-item]
        # A single string is not its characters: "01" is not ("0", "1").
        with pytest.raises(TypeError, match=r"classes must be the labels as text"):
            read_image_list(test, tmp_path / "images", classes="01")

    def test_repeated_class(self, tmp_path: Path) -> None:
        _, test = write_lists(tmp_path, {0: 2, 1: 2}, {1: 1})
        with pytest.raises(ValueError, match=r"classes must be distinct, .*'1' is named 2 times"):
            read_image_list(test, tmp_path / "images", classes=("0", "1", "1"))

    def test_unknown_test_label(self, tmp_path: Path) -> None:
        _, test = write_lists(tmp_path, {1: 2}, {7: 1})
        with pytest.raises(ValueError, match=r"labels that the training split lacks: \['7'\]"):
            read_image_list(test, tmp_path / "images", classes=("1",))

    @pytest.mark.parametrize("line", ["just_a_path.png", "a.png cat", "a.png -1"])
    def test_line_that_does_not_parse(self, tmp_path: Path, line: str) -> None:
        write_image(tmp_path / "a.png", 0)
        listing = tmp_path / "train.txt"
        listing.write_text(f"a.png 0\n\n{line}\n")
        with pytest.raises(ValueError, match=rf"{listing}, line 3: expected 'relative/path label'"):
            read_image_list(listing, tmp_path)

    def test_missing_paths_are_listed(self, tmp_path: Path) -> None:
        listing = tmp_path / "train.txt"
        listing.write_text("".join(f"gone/{i}.png 0\n" for i in range(8)))
        with pytest.raises(FileNotFoundError) as error:
            read_image_list(listing, tmp_path)
        message = str(error.value)
        assert "8 of the 8 images listed" in message and "--image-root" in message
        assert "gone/4.png" in message and "gone/5.png" not in message  # the first five

    def test_missing_list_file(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match=r"list file .*nope\.txt does not exist"):
            read_image_list(tmp_path / "nope.txt", tmp_path)

    def test_empty_list_file(self, tmp_path: Path) -> None:
        (tmp_path / "train.txt").write_text("\n")
        with pytest.raises(ValueError, match="lists no image"):
            read_image_list(tmp_path / "train.txt", tmp_path)


def _samples(counts: list[int], classes: tuple[str, ...], source: str) -> ImageSamples:
    labels = np.repeat(np.arange(len(counts)), counts)
    return ImageSamples([f"{i}.png" for i in range(len(labels))], labels, classes, source)


class TestCheckSplits:
    def test_test_class_missing_from_training(self) -> None:
        train = _samples([3, 3], ("cat", "dog"), "train/")
        test = _samples([1, 1, 1], ("cat", "dog", "eel"), "test/")
        with pytest.raises(ValueError, match=r"\['eel'\] are in test/ but not in train/"):
            check_splits(train, test)

    def test_training_class_missing_from_test(self) -> None:
        train = _samples([3, 3], ("cat", "dog"), "train/")
        test = _samples([1], ("cat",), "test/")
        with pytest.raises(ValueError, match=r"\['dog'\] are in train/ but not in test/"):
            check_splits(train, test)

    def test_training_class_without_test_images(self) -> None:
        # A test list read with the training list's classes: class "1" has no image.
        train = _samples([3, 3, 3], ("0", "1", "2"), "train.txt")
        test = _samples([2, 0, 1], ("0", "1", "2"), "test.txt")
        with pytest.raises(ValueError, match=r"classes \['1'\] are in train\.txt but not in test"):
            check_splits(train, test)

    def test_folder_read_with_the_training_classes_lacking_a_class(self, tmp_path: Path) -> None:
        # The training classes keep the test ids aligned; a class still needs test images.
        write_folder(tmp_path, {"cat": 2, "dog": 2}, {"cat": 1})
        train = scan_image_folder(tmp_path, "train")
        test = scan_image_folder(tmp_path, "test", classes=train.classes)
        with pytest.raises(ValueError, match=r"classes \['dog'\] are in .*train but not in "):
            check_splits(train, test)

    def test_many_missing_classes_are_counted(self) -> None:
        names = tuple(str(c) for c in range(8))
        train = _samples([2] * 8, names, "train.txt")
        test = _samples([1] + [0] * 7, names, "test.txt")
        with pytest.raises(ValueError, match=r"\['1', '2', '3', '4', '5'\] \(and 2 more\) are in"):
            check_splits(train, test)

    def test_class_with_one_training_image(self) -> None:
        train = _samples([3, 1], ("cat", "dog"), "train/")
        test = _samples([1, 1], ("cat", "dog"), "test/")
        with pytest.raises(ValueError, match=r"fewer than 2 training images .*: dog \(1\)"):
            check_splits(train, test)


class TestImageModes:
    def test_modes_and_sizes(self, tmp_path: Path) -> None:
        write_image(tmp_path / "a" / "cat" / "1.png", 0, mode="RGB", size=(30, 20))
        write_image(tmp_path / "a" / "cat" / "2.png", 0, mode="RGB", size=(8, 9))
        mode, sizes = image_modes(scan_image_folder(tmp_path, "a"))
        assert mode == "RGB" and sizes == [(30, 20), (8, 9)]

    def test_mixed_modes(self, tmp_path: Path) -> None:
        write_image(tmp_path / "train" / "cat" / "gray.png", 0, mode="L")
        write_image(tmp_path / "train" / "cat" / "rgb.png", 0, mode="RGB")
        samples = scan_image_folder(tmp_path)
        with pytest.raises(ValueError, match=r"mixes grayscale and colour images: 1 grayscale"):
            image_modes(samples)
        assert image_modes(samples, mixed_ok=True)[0] == "RGB"

    def test_a_truncated_image_has_a_readable_header(self, tmp_path: Path) -> None:
        # The header pass does not decode: the decoding pass before training finds it.
        write_truncated(tmp_path / "train" / "cat" / "cut.png")
        assert image_modes(scan_image_folder(tmp_path)) == ("RGB", [(32, 32)])

    def test_unreadable_image(self, tmp_path: Path) -> None:
        (tmp_path / "train" / "cat").mkdir(parents=True)
        (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"not a png")
        with pytest.raises(ValueError, match=r"broken\.png is not a readable image"):
            image_modes(scan_image_folder(tmp_path))


class TestDatasets:
    def test_folder_items_are_two_views_label_and_index(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2, "dog": 3}, {"cat": 1, "dog": 1}, mode="RGB")
        train = LongTailImageFolder(tmp_path, transform=image_views(16))
        (view0, view1), label, index = train[3]
        assert view0.shape == view1.shape == (3, 16, 16)
        assert (label, index) == (1, 3)
        assert train.classes == ("cat", "dog") and train.targets.tolist() == [0, 0, 1, 1, 1]

    def test_list_items_in_a_loader_with_workers(self, tmp_path: Path) -> None:
        train_list, _ = write_lists(tmp_path, {0: 3, 1: 2}, {0: 1, 1: 1})
        train = ImageListDataset(train_list, tmp_path / "images",
                                 transform=image_views(8, color=False))  # fmt: skip
        loader = DataLoader(train, batch_size=5, num_workers=2)
        (view0, view1), labels, indices = next(iter(loader))
        assert view0.shape == view1.shape == (5, 1, 8, 8)
        assert labels.tolist() == [0, 0, 0, 1, 1] and indices.tolist() == [0, 1, 2, 3, 4]

    def test_no_transform_gives_the_converted_image(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2}, {"cat": 1}, mode="L")
        image, _, _ = LongTailImageFolder(tmp_path, image_mode="RGB")[1]
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert image.getpixel((0, 0)) == (1, 1, 1)  # image 1 of class 0 has value 1

    def test_test_list_without_class_0(self, tmp_path: Path) -> None:
        train_list, test_list = write_lists(tmp_path, {0: 2, 1: 2, 2: 2}, {1: 1, 2: 1})
        assert test_list.read_text().splitlines()[0] == "test/n001/img 0.png 1"
        test = ImageListDataset(test_list, tmp_path / "images")
        assert [test[i][1] for i in range(2)] == [1, 2]  # the labels on the lines
        assert test.classes == ("0", "1", "2")
        train = ImageListDataset(train_list, tmp_path / "images")
        aligned = ImageListDataset(test_list, tmp_path / "images", classes=train.classes)
        assert [aligned[i][1] for i in range(2)] == [1, 2] and aligned.classes == train.classes

    def test_test_folder_without_a_class_takes_the_training_classes(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2, "dog": 2, "fox": 2}, {"cat": 1, "fox": 2})
        train = LongTailImageFolder(tmp_path, "train")
        alone = LongTailImageFolder(tmp_path, "test")
        assert [alone[i][1] for i in range(3)] == [0, 1, 1] and alone.classes == ("cat", "fox")
        test = LongTailImageFolder(tmp_path, "test", classes=train.classes)
        assert [test[i][1] for i in range(3)] == [0, 2, 2]  # fox keeps its training label
        assert test.classes == ("cat", "dog", "fox") and test.targets.tolist() == [0, 2, 2]
        assert [test[i][2] for i in range(3)] == [0, 1, 2]
        with pytest.raises(ValueError, match=r"class folders that are not in classes: 'fox'"):
            LongTailImageFolder(tmp_path, "test", classes=("cat", "dog"))
        with pytest.raises(TypeError, match="classes must be the class names"):
            LongTailImageFolder(tmp_path, "test", classes="cat")

    def test_test_list_without_the_last_class_takes_the_training_classes(
        self, tmp_path: Path
    ) -> None:
        train_list, test_list = write_lists(tmp_path, {0: 2, 1: 2, 2: 2}, {0: 1, 1: 1})
        train = ImageListDataset(train_list, tmp_path / "images")
        assert ImageListDataset(test_list, tmp_path / "images").classes == ("0", "1")
        test = ImageListDataset(test_list, tmp_path / "images", classes=train.classes)
        assert test.classes == ("0", "1", "2") and test.targets.tolist() == [0, 1]

    def test_truncated_image_names_its_file(self, tmp_path: Path) -> None:
        path = write_truncated(tmp_path / "train" / "cat" / "cut.png")
        write_image(tmp_path / "train" / "cat" / "fine.png", 7)
        with pytest.raises(OSError, match="image file is truncated"):  # what PIL raises
            Image.open(path).load()
        with pytest.raises(ValueError, match=rf"{path} is not a readable image \(image file is "
                           r"truncated\); remove or replace it"):  # fmt: skip
            open_image(str(path), "RGB")
        dataset = LongTailImageFolder(tmp_path)
        assert dataset[1][0].getpixel((0, 0)) == (7, 7, 7)  # fine.png
        with pytest.raises(ValueError, match=r"cut\.png is not a readable image"):
            dataset[0]

    def test_a_file_that_is_not_an_image_names_it(self, tmp_path: Path) -> None:
        (tmp_path / "fake.png").write_bytes(b"not a png")
        samples = ImageSamples([str(tmp_path / "fake.png")], np.array([0]), ("cat",), "x")
        with pytest.raises(ValueError, match=r"fake\.png is not a readable image \(cannot"):
            ImageFileDataset(samples)[0]

    def test_bad_image_mode(self, tmp_path: Path) -> None:
        write_folder(tmp_path, {"cat": 2}, {"cat": 1})
        with pytest.raises(ValueError, match="image_mode must be 'L'"):
            LongTailImageFolder(tmp_path, image_mode="CMYK")


class TestImageViews:
    def test_settings_scale_with_size(self) -> None:
        small, large = view_settings(32, color=True), view_settings(64, color=True)
        assert (small["blur_prob"], small["min_scale"]) == (0.0, 0.2)
        assert (large["blur_prob"], large["min_scale"]) == (0.5, 0.08)
        assert view_settings(32, color=False)["grayscale_prob"] == 0.0

    def test_any_input_size_and_mode(self) -> None:
        torch.manual_seed(0)
        views = image_views(24)(Image.new("L", (50, 31)))
        assert [v.shape for v in views] == [(3, 24, 24), (3, 24, 24)]
