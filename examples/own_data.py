"""Measure SDCLR on your own long-tailed images: an image folder and list files.

This script first writes a small, naturally long-tailed dataset the way your own data
might look: Fashion-MNIST images saved as PNG files, class ``c`` keeping
``n_head * (1 / ratio) ** (c / 9)`` training images, in both layouts the study reads:

- an image folder: ``DIR/train/CLASS/*.png`` and ``DIR/test/CLASS/*.png``;
- list files: ``DIR/train.txt`` and ``DIR/test.txt``, one ``relative/path label`` line
  per image, as ImageNet-LT, Places-LT and iNaturalist publish their splits.

Then it runs the long-tail study on each, from Python, as
``selfdamage longtail --dataset folder --data-dir DIR`` and
``selfdamage longtail --dataset list --train-list DIR/train.txt --test-list DIR/test.txt``
would from the shell. The study uses the long tail as it finds it (no subsampling),
prints its class profile, and groups the classes into Many / Medium / Few by thirds
(the folder run) or by ImageNet-LT's count thresholds (the list run, ``groups="counts"``).

Run:
    python examples/own_data.py                  # 10 epochs per run: about 10 min on 2 CPU cores
    python examples/own_data.py --out runs/own   # where the data and the results go
    python examples/own_data.py --fast           # 2 steps per run on 546 images (CI)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from selfdamage.data import FASHION_MNIST_CLASSES, load_fashion_mnist
from selfdamage.study import StudyConfig, format_table, run_study


def write_dataset(root: Path, *, n_head: int, ratio: float, n_test: int) -> list[int]:
    """Writes the long-tailed image folder and list files under ``root``; returns the counts."""
    counts = [int(n_head * (1 / ratio) ** (c / 9)) for c in range(10)]
    for split, n in (("train", counts), ("test", [n_test] * 10)):
        images, labels = load_fashion_mnist(train=split == "train")
        lines = []
        for c, count in enumerate(n):
            name = FASHION_MNIST_CLASSES[c].replace("/", "-").replace(" ", "-").lower()
            for i in np.flatnonzero(labels.numpy() == c)[:count]:
                relative = Path(split) / name / f"{i:05d}.png"
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i].numpy()).save(root / relative)
                lines.append(f"{relative} {c}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="2 steps per run on 546 images (CI)")
    parser.add_argument("--out", default="runs/own_data", help="folder for data and results")
    args = parser.parse_args()
    root = Path(args.out)
    n_head, n_test = (150, 10) if args.fast else (1000, 100)
    counts = write_dataset(root / "data", n_head=n_head, ratio=15, n_test=n_test)
    print(f"wrote {sum(counts)} training images, {counts} per class, to {root / 'data'}")

    short = {"epochs": 1, "max_steps": 2, "batch_size": 32, "width": 4, "probe_draws": 1}
    common = dict(short if args.fast else {"epochs": 10, "batch_size": 128}, progress=False)
    folder = StudyConfig(
        dataset="folder", data_dir=str(root / "data"), out_dir=str(root / "folder"), **common
    )
    print(format_table(run_study(folder)), end="\n\n")
    lists = StudyConfig(
        dataset="list",
        train_list=str(root / "data" / "train.txt"),
        test_list=str(root / "data" / "test.txt"),
        groups="counts",
        group_thresholds=(50, 20) if args.fast else (300, 100),
        out_dir=str(root / "list"),
        **common,
    )
    print(format_table(run_study(lists)))


if __name__ == "__main__":
    main()
