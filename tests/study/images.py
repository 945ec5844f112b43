"""Small generated image datasets on disk, in both layouts, for the own-data tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(
    path: Path, value: int, *, mode: str = "L", size: tuple[int, int] = (12, 10)
) -> None:
    """A PNG whose every pixel is ``value`` (each channel), ``size`` = (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 1 if mode == "L" else 3
    pixels = np.full((size[1], size[0], channels), value, dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)


def write_folder(
    root: Path,
    train: Mapping[str, int],
    test: Mapping[str, int],
    *,
    mode: str = "L",
    size: tuple[int, int] = (12, 10),
    test_split: str = "test",
) -> Path:
    """``root/train/CLASS/i.png`` and ``root/test/CLASS/i.png`` with the given counts.

    Image ``i`` of the ``c``-th class (in sorted order) has pixel value ``10 * c + i``
    (modulo 256), so tests can tell images apart.
    """
    for split, counts in (("train", train), (test_split, test)):
        for c, name in enumerate(sorted(counts)):
            for i in range(counts[name]):
                write_image(root / split / name / f"{i}.png", (10 * c + i) % 256, mode=mode,
                            size=size)  # fmt: skip
    return root


def write_lists(root: Path, train: Mapping[int, int], test: Mapping[int, int]) -> tuple[Path, Path]:
    """Images under ``root/images`` and list files ``root/train.txt``, ``root/test.txt``."""
    files = []
    for split, counts in (("train", train), ("test", test)):
        lines = []
        for label, count in counts.items():
            for i in range(count):
                relative = f"{split}/n{label:03d}/img {i}.png"  # a space in the name
                write_image(root / "images" / relative, (10 * label + i) % 256)
                lines.append(f"{relative} {label}")
        path = root / f"{split}.txt"
        path.write_text("\n".join(lines) + "\n")
        files.append(path)
    return files[0], files[1]


def write_truncated(path: Path) -> Path:
    """A PNG of 32 x 32 random colours cut after half its bytes: its header reads, its
    pixels do not (PIL: "image file is truncated")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
