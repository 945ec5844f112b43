"""Your own images on disk: image folders and list files, read and checked.

Two layouts are read, the ones long-tail benchmarks and torchvision use:

- an **image folder** (torchvision's ``ImageFolder``): ``ROOT/train/CLASS/*.png`` and
  ``ROOT/test/CLASS/*.png`` (or ``ROOT/val/...``), one sub-folder per class, class ids
  in sorted order of the folder names, or their positions in the ``classes`` a split is
  read with (:func:`scan_image_folder`);
- a **list file** (ImageNet-LT, Places-LT, iNaturalist): one ``relative/path label``
  line per image, paths relative to an image root (:func:`read_image_list`).

Both give an :class:`ImageSamples` (paths, labels, class names), checked before any
training: a missing or empty folder, a class without images, a line that does not
parse, a path that does not exist, a file that is not an image and a split whose classes
differ from the other's (a class without images in one of them included) all raise an
error that names the path and the fix (``check_splits``, ``image_modes``).
:mod:`selfdamage.data.image_datasets` serves them as datasets.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from selfdamage._checks import name_list

__all__ = ["IMAGE_EXTENSIONS", "ImageSamples", "read_image_list", "scan_image_folder"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff",
                    ".webp")  # fmt: skip
"""File name endings read as images (case-insensitive), as torchvision's ``ImageFolder``."""

_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
_SHOWN = 5  # paths quoted in an error message
_FOLDERS = "train.classes or ('cat', 'dog')"  # an example of an image folder's classes
DECODE_ERRORS = (OSError, SyntaxError, ValueError)
"""What PIL raises for a file it cannot read: not an image, truncated, corrupt."""


def unreadable(path: str, error: Exception) -> ValueError:
    """The error for an image file PIL cannot read, naming the file and the fix.

    Examples:
        >>> unreadable("cat.png", OSError("image file is truncated"))
        ValueError('cat.png is not a readable image (image file is truncated); remove or replace it.')
    """  # noqa: E501
    return ValueError(f"{path} is not a readable image ({error}); remove or replace it.")


@dataclass(frozen=True, eq=False)
class ImageSamples:
    """Image files and their labels: one split of a dataset on disk.

    Attributes:
        paths: The image files.
        labels: Class id of every image, ``int64``, ids ``0 .. len(classes) - 1``.
        classes: Class names, indexed by class id: the sorted folder names, or a list
            file's labels as text (``"0"`` up to its largest label); or the ``classes``
            the split was read with.
        source: The folder or list file the samples come from (for messages).

    Examples:
        >>> samples = ImageSamples(("a.png", "b.png"), np.array([0, 1]), ("cat", "dog"), "x")
        >>> samples.class_counts().tolist()
        [1, 1]
    """

    paths: Sequence[str]
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> np.ndarray:
        """Images per class, indexed by class id."""
        return np.bincount(self.labels, minlength=len(self.classes))


def _class_names(classes: object, what: str, example: str) -> tuple[str, ...]:
    """``classes`` as a tuple of ``str``, if it is an ordered collection of distinct strings.

    The check of the ``classes`` that :func:`read_image_list` and
    :func:`scan_image_folder` take; ``what`` and ``example`` are for the message.

    Raises:
        TypeError: If ``classes`` is a single string, unordered (a set), not iterable, or
            holds something other than strings.
        ValueError: If it is empty or names a class twice.

    Examples:
        >>> _class_names(["cat", "dog"], "the class names", "('cat', 'dog')")
        ('cat', 'dog')
        >>> _class_names("cat", "the class names", "('cat', 'dog')")
        Traceback (most recent call last):
        ...
        TypeError: classes must be the class names, e.g. ('cat', 'dog') (strings in class-id order), got classes='cat'.
        >>> _class_names(("cat", "dog", "cat"), "the class names", "('cat', 'dog')")
        Traceback (most recent call last):
        ...
        ValueError: classes must be distinct, got classes=('cat', 'dog', 'cat'): 'cat' is named 2 times; remove the repeats.
    """  # noqa: E501
    kind = f"{what}, e.g. {example} (strings in class-id order)"
    unordered = isinstance(classes, (str, bytes, AbstractSet))
    if unordered or not isinstance(classes, Iterable):
        raise TypeError(f"classes must be {kind}, got classes={classes!r}.")
    names = tuple(classes)
    shown = f"{names[:_SHOWN]!r}{'...' if len(names) > _SHOWN else ''}"
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"classes must be {kind}, got classes={shown}.")
    if not names:
        raise ValueError(f"classes must name at least one class, got classes={names!r}.")
    repeated = [(name, count) for name, count in Counter(names).items() if count > 1]
    if repeated:
        twice = name_list([f"{name!r} is named {count} times" for name, count in repeated])
        raise ValueError(
            f"classes must be distinct, got classes={shown}: {twice}; remove the repeats."
        )
    return tuple(str(name) for name in names)


def scan_image_folder(
    root: str | Path, split: str = "train", *, classes: Sequence[str] | None = None
) -> ImageSamples:
    """The images of ``root/split/CLASS/...``, class ids in sorted order of ``CLASS``.

    Files whose names do not end in one of :data:`IMAGE_EXTENSIONS` are skipped, with one
    warning that counts them. Sub-folders of a class folder are searched too.

    Without ``classes``, the class ids follow the sorted folder names of this split alone:
    a test split that lacks a class folder numbers the classes after it differently from
    the training split. Read it with the training split's ``classes`` to keep the training
    ids: a class id is then the position of the folder's name in ``classes``, a class
    without a folder here is a class without images, and a folder whose name ``classes``
    lacks is an error.

    Args:
        root: The dataset folder.
        split: The split's sub-folder, e.g. ``"train"``, ``"test"`` or ``"val"``.
        classes: Class names in class-id order, instead of the sorted folder names, e.g.
            the training split's ``classes`` for the test split.

    Raises:
        FileNotFoundError: If ``root/split`` is not a folder.
        TypeError: If ``classes`` is not a list or tuple of strings.
        ValueError: If the split has no class folders, a class folder has no images,
            ``classes`` is empty or names a class twice, or the split has a class folder
            whose name ``classes`` lacks.

    Examples:
        >>> samples = scan_image_folder("my_images", "train")  # doctest: +SKIP
        >>> samples.classes  # doctest: +SKIP
        ('cat', 'dog', 'fox')
        >>> test = scan_image_folder("my_images", "test",
        ...     classes=samples.classes)  # doctest: +SKIP
    """
    given = None if classes is None else _class_names(classes, "the class names", _FOLDERS)
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is not a folder. An image folder holds {Path(root) / 'train'}/CLASS/"
            f"IMAGE and {Path(root) / 'test'}/CLASS/IMAGE (or val/ instead of test/); "
            "check --data-dir."
        )
    folders, names = _class_folders(folder, split, given)
    present = set(folders)
    paths: list[str] = []
    labels: list[int] = []
    skipped: Counter[str] = Counter()
    for label, name in enumerate(names):
        if name not in present:  # a class of ``classes`` without a folder in this split
            continue
        found = 0
        for directory, subdirs, files in os.walk(folder / name):
            subdirs.sort()
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(directory, file))
                    found += 1
                else:
                    skipped[Path(file).suffix.lower() or file] += 1
        if found == 0:
            raise ValueError(
                f"class folder {folder / name} has no images (files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder."
            )
        labels.extend([label] * found)
    if skipped:
        kinds = ", ".join(f"{count} {kind!r}" for kind, count in skipped.most_common(_SHOWN))
        warnings.warn(
            f"skipped {sum(skipped.values())} files in {folder} that are not images "
            f"({kinds}); only {', '.join(IMAGE_EXTENSIONS)} are read.",
            stacklevel=2,
        )
    return ImageSamples(paths, np.asarray(labels, dtype=np.int64), names, str(folder))


def _class_folders(
    folder: Path, split: str, given: tuple[str, ...] | None
) -> tuple[list[str], tuple[str, ...]]:
    """The class folders of ``folder``, sorted, and the class names in class-id order: the
    folders' names, or ``given``, which must name every folder."""
    folders = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not folders:
        raise ValueError(
            f"{folder} has no class folders: put the images of each class into their own "
            f"sub-folder, e.g. {folder / 'CLASS_NAME' / 'image.png'}."
        )
    if given is None:
        return folders, tuple(folders)
    unknown = sorted(set(folders) - set(given))
    if unknown:
        raise ValueError(
            f"{folder} has class folders that are not in classes: "
            f"{name_list([repr(name) for name in unknown])} (split {split!r}, "
            f"classes={name_list([repr(name) for name in given])}). Class ids are "
            "positions in classes, so every folder of the split needs its name there: "
            "rename or remove the folder, or add the class to classes (with the "
            "training split's classes: add the class's images to the training split)."
        )
    return folders, given


def find_test_split(root: str | Path) -> str:
    """The name of the test split of an image folder: ``"test"``, else ``"val"``.

    Raises:
        FileNotFoundError: If ``root`` has neither.

    Examples:
        >>> find_test_split("my_images")  # doctest: +SKIP
        'test'
    """
    for split in ("test", "val"):
        if (Path(root) / split).is_dir():
            return split
    raise FileNotFoundError(
        f"{root} has no test/ or val/ folder: the study measures on a labeled test split, "
        f"laid out like the training one ({Path(root) / 'test'}/CLASS/IMAGE)."
    )


def read_image_list(
    list_file: str | Path, image_root: str | Path, *, classes: Sequence[str] | None = None
) -> ImageSamples:
    """The images of a list file: one ``relative/path label`` line per image.

    The format of ImageNet-LT, Places-LT and iNaturalist's published splits. Paths are
    relative to ``image_root`` and may hold spaces (the label is the last field); labels
    are integers ``>= 0``; empty lines are skipped. A label is its class id, whatever
    labels the file lacks: the classes are ``"0"`` up to the largest label (a label
    missing from the file is a class without images), so a test list that lacks a class
    still scores each image against its own label. With ``classes``, a label is the id
    of its text in ``classes`` instead.

    Args:
        list_file: The list file.
        image_root: The folder the paths are relative to.
        classes: Class names, the labels as text, to use instead of ``"0"`` up to the
            file's largest label, e.g. the training list's ``classes`` for a test list.

    Raises:
        FileNotFoundError: If the list file is missing, or paths in it do not exist (the
            message lists the first few).
        TypeError: If ``classes`` is not a list or tuple of strings.
        ValueError: If a line does not parse (the message names the file and line), the
            file lists no image, it has a label that ``classes`` lacks, or ``classes`` is
            empty or names a class twice.

    Examples:
        >>> samples = read_image_list("ImageNet_LT_test.txt", "imagenet")  # doctest: +SKIP
        >>> samples.classes[:3], samples.labels[:3]  # doctest: +SKIP
        (('0', '1', '2'), array([0, 0, 2]))
    """
    list_path, root = Path(list_file), Path(image_root)
    if classes is not None:
        classes = _class_names(classes, "the labels as text", "('0', '1', '2')")
    if not list_path.is_file():
        raise FileNotFoundError(f"list file {list_path} does not exist; check its path.")
    paths: list[str] = []
    raw: list[int] = []
    with list_path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.strip().rsplit(maxsplit=1)
            if len(fields) != 2 or not fields[1].isdigit():
                raise ValueError(
                    f"{list_path}, line {number}: expected 'relative/path label' with an "
                    f"integer label >= 0, got {line.strip()!r}."
                )
            paths.append(str(root / fields[0]))
            raw.append(int(fields[1]))
    if not paths:
        raise ValueError(f"list file {list_path} lists no image: it needs 'path label' lines.")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:_SHOWN])
        raise FileNotFoundError(
            f"{len(missing)} of the {len(paths)} images listed in {list_path} do not exist "
            f"under --image-root {root}, e.g.:\n  {shown}\nCheck --image-root (the folder "
            "the paths are relative to)."
        )
    if classes is None:  # every label is its own class id
        names = tuple(str(label) for label in range(max(raw) + 1))
        return ImageSamples(paths, np.asarray(raw, dtype=np.int64), names, str(list_path))
    ids = {name: i for i, name in enumerate(classes)}
    unknown = sorted({str(label) for label in raw} - set(ids), key=int)
    if unknown:
        raise ValueError(
            f"{list_path} has labels that the training split lacks: {unknown[:_SHOWN]}; "
            "every test class needs training images."
        )
    labels = np.asarray([ids[str(label)] for label in raw], dtype=np.int64)
    return ImageSamples(paths, labels, classes, str(list_path))


def check_splits(train: ImageSamples, test: ImageSamples, *, min_train: int = 2) -> None:
    """Checks that both splits have images of the same classes, and every class ``min_train``
    training images.

    A class counts as in a split when the split has images of it: a class name without
    images (a test list read with the training list's ``classes`` that lacks a class)
    counts as missing.

    Raises:
        ValueError: If a class has images in one split but not in the other, or fewer
            than ``min_train`` training images; the message names the classes and the fix.

    Examples:
        >>> two = ("cat", "dog")
        >>> train = ImageSamples(("a", "b", "c", "d"), np.array([0, 0, 1, 1]), two, "train")
        >>> check_splits(train, ImageSamples(("e", "f"), np.array([0, 1]), two, "test"))
        >>> check_splits(train, ImageSamples(("e",), np.array([0]), two, "test"))
        Traceback (most recent call last):
        ...
        ValueError: classes ['dog'] are in train but not in test; both splits need the same classes (add their images, or remove the classes from both).
    """  # noqa: E501
    for first, second in ((test, train), (train, test)):
        having = {name for name, count in zip(second.classes, second.class_counts()) if count}
        missing = [
            name
            for name, count in zip(first.classes, first.class_counts())
            if count and name not in having
        ]
        if missing:
            more = f" (and {len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else ""
            raise ValueError(
                f"classes {missing[:_SHOWN]}{more} are in {first.source} but not in "
                f"{second.source}; both splits need the same classes (add their images, "
                "or remove the classes from both)."
            )
    counts = train.class_counts()
    small = [f"{train.classes[c]} ({counts[c]})" for c in np.flatnonzero(counts < min_train)]
    if small:
        raise ValueError(
            f"classes with fewer than {min_train} training images in {train.source}: "
            f"{', '.join(small[:_SHOWN])}; every class needs at least {min_train} (for a "
            "labeled subset and the groups): add images or remove these classes."
        )


def image_modes(
    samples: ImageSamples, *, mixed_ok: bool = False
) -> tuple[str, list[tuple[int, int]]]:
    """Opens every image's header: the split's colour kind and every image's size.

    Args:
        samples: The images to check.
        mixed_ok: Allow grayscale and colour images together (they will be converted).

    Returns:
        ``"L"`` if every image is grayscale, ``"RGB"`` if any is in colour, and the
        ``(width, height)`` of every image.

    Raises:
        ValueError: If a file is not a readable image, or (unless ``mixed_ok``)
            grayscale and colour images are mixed (the message counts both and shows one
            of each).

    Examples:
        >>> mode, sizes = image_modes(samples)  # doctest: +SKIP
    """
    kinds: dict[str, list[str]] = {"L": [], "RGB": []}
    sizes: list[tuple[int, int]] = []
    for path in samples.paths:
        try:
            with Image.open(path) as image:
                mode, size = image.mode, image.size
        except DECODE_ERRORS as error:
            raise unreadable(path, error) from error
        kinds["L" if mode in _GRAY_MODES else "RGB"].append(path)
        sizes.append(size)
    if kinds["L"] and kinds["RGB"] and not mixed_ok:
        raise ValueError(
            f"{samples.source} mixes grayscale and colour images: {len(kinds['L'])} "
            f"grayscale (e.g. {kinds['L'][0]}) and {len(kinds['RGB'])} colour (e.g. "
            f"{kinds['RGB'][0]}); convert them to one mode, or pass image_mode='RGB' "
            "(--image-mode RGB) or 'L' to convert every image when it is read."
        )
    return ("RGB" if kinds["RGB"] else "L"), sizes
