"""The checks before training that need the machine or the data, on a hand-made dataset."""

from __future__ import annotations

import pytest
import torch

from selfdamage.study import StudyConfig
from selfdamage.study._preflight import check_device, check_fits_data
from selfdamage.study.data import StudyData


def data(per_class: tuple[int, ...]) -> StudyData:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    images = torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8)
    return StudyData(images, labels, images[:2], labels[:2], len(per_class), (0.5,), (0.5,))


class TestCheckFitsData:
    def test_fits(self) -> None:
        config = StudyConfig(probe_shots=3, batch_size=4)
        check_fits_data(config, data((5, 3, 4)), {"baseline-order0-seed0": 4})
        check_fits_data(StudyConfig(probe_shots=0), data((5, 3)), {})  # 0: all of them

    def test_probe_shots_beyond_the_smallest_class(self) -> None:
        with pytest.raises(ValueError, match=r"probe_shots must be in \[0, 3\], got probe_shots=4"):
            check_fits_data(StudyConfig(probe_shots=4), data((5, 3, 4)), {})

    def test_own_images_cap_probe_shots_instead(self) -> None:
        # A natural long tail's rarest class is small by design: the probe takes all of it
        # (profile.probe_shots) and the report says so.
        config = StudyConfig(dataset="folder", data_dir="x", probe_shots=4)
        check_fits_data(config, data((5, 3, 4)), {})

    def test_batch_larger_than_a_subset(self) -> None:
        subsets = {"baseline-order0-seed0": 300, "balanced-order0-seed0": 290}
        with pytest.raises(
            ValueError,
            match=r"batch_size must be at most 290, got batch_size=295: the training subset "
            r"of balanced-order0-seed0 has 290 images",
        ):
            check_fits_data(StudyConfig(probe_shots=1, batch_size=295), data((5,)), subsets)


class TestCheckDevice:
    def test_cpu(self) -> None:
        check_device("cpu")

    @pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
    def test_cuda_without_gpu(self) -> None:
        with pytest.raises(ValueError, match=r"device must be available here, got device='cuda'"):
            check_device("cuda")
