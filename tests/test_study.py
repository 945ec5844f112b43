from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from selfdamage import study
from selfdamage.data import FASHION_MNIST_DIRS

HAVE_FASHION_MNIST = any(
    (Path(d) / "train-images-idx3-ubyte.gz").exists() for d in FASHION_MNIST_DIRS
)
needs_data = pytest.mark.skipif(
    not HAVE_FASHION_MNIST,
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)

TINY: dict[str, Any] = {
    "width": 4,
    "n_max": 300,
    "batch_size": 64,
    "max_steps": 2,
    "probe_shots": 20,
    "probe_draws": 1,
    "progress": False,
}


class TestSummary:
    def test_means_stds_and_paired_differences_by_hand(self) -> None:
        def run(variant: str, seed: int, accuracy: float, few: float) -> dict[str, Any]:
            metrics = dict.fromkeys(study.METRICS, 0.5)
            metrics |= {"accuracy": accuracy, "few": few, "damage_auroc": None}
            return {"variant": variant, "order": 0, "seed": seed, **metrics}

        runs = [
            run("baseline", 0, 0.70, 0.50),
            run("baseline", 1, 0.74, 0.54),
            run("sdclr", 0, 0.73, 0.58),
            run("sdclr", 1, 0.75, 0.56),
            run("balanced", 0, 0.80, 0.70),
            run("balanced", 1, 0.80, 0.70),
        ]
        summary = study._summarize(runs, study.VARIANTS)
        # By hand: baseline mean 0.72, sample std sqrt(2 * 0.02^2 / 1) = 0.028284.
        assert summary["baseline"]["accuracy"]["mean"] == pytest.approx(0.72)
        assert summary["baseline"]["accuracy"]["std"] == pytest.approx(0.0282843, abs=1e-6)
        # Paired differences: accuracy 0.03 and 0.01 -> mean 0.02; few 0.08 and 0.02 -> 0.05.
        assert summary["sdclr - baseline"]["accuracy"]["mean"] == pytest.approx(0.02)
        assert summary["sdclr - baseline"]["few"]["mean"] == pytest.approx(0.05)
        assert summary["sdclr - baseline"]["runs"] == 2
        # Gap closed: (0.74 - 0.72) / (0.80 - 0.72) = 0.25; few: (0.57 - 0.52) / (0.70 - 0.52).
        assert summary["gap_closed"]["accuracy"] == pytest.approx(0.25)
        assert summary["gap_closed"]["few"] == pytest.approx(0.05 / 0.18)
        assert summary["baseline"]["damage_auroc"] == {"mean": None, "std": None}

    def test_table(self) -> None:
        stats = {m: {"mean": 0.5, "std": 0.01} for m in study.METRICS}
        summary = {"baseline": stats | {"runs": 2}, "gap_closed": {"accuracy": 0.25, "few": None}}
        table = study.format_table({"summary": summary})
        assert "overall" in table and "damage AUROC" in table
        assert "50.0 ± 1.0" in table
        assert "closed by SDCLR: overall 25%, Few -" in table


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            (
                {"method": "swav"},
                r"method must be one of 'simclr', 'moco', 'byol', got method='swav'",
            ),
            ({"dataset": "mnist"}, "dataset must be one of"),
            ({"epochs": 0}, "epochs must be a positive integer"),
            ({"probe_shots": -1}, "probe_shots must be >= 0"),
            ({"seeds": []}, "seeds must name at least one seed"),
        ],
    )
    def test_bad_options(self, tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            study.run_longtail_study(out_dir=tmp_path, **kwargs)

    def test_missing_data_says_how_to_get_it(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
            study.run_longtail_study(out_dir=tmp_path, data_dir=tmp_path / "nothing-here")


@needs_data
class TestStudy:
    def test_resume_continues_exactly(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        options = {**TINY, "epochs": 2, "method": "moco"}  # MoCo: the memory bank resumes too
        study.run_longtail_study(out_dir=tmp_path / "straight", **options)

        save = torch.save

        def crash_after_first_epoch(obj: Any, path: Any) -> None:
            save(obj, path)
            if isinstance(obj, dict) and obj.get("epoch") == 1:
                raise KeyboardInterrupt

        monkeypatch.setattr(torch, "save", crash_after_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            study.run_longtail_study(out_dir=tmp_path / "resumed", **options)
        monkeypatch.setattr(torch, "save", save)
        study.run_longtail_study(out_dir=tmp_path / "resumed", resume=True, **options)

        name = "baseline-order0-seed0.pt"
        straight = torch.load(tmp_path / "straight" / "checkpoints" / name, weights_only=False)
        resumed = torch.load(tmp_path / "resumed" / "checkpoints" / name, weights_only=False)
        assert straight["losses"] == resumed["losses"]
        for key, value in straight["model"].items():
            assert torch.equal(resumed["model"][key], value), key
        for key, value in straight["memory_banks"].items():
            assert torch.equal(resumed["memory_banks"][key], value), key
        first = json.loads((tmp_path / "straight" / "runs" / "sdclr-order0-seed0.json").read_text())
        second = json.loads((tmp_path / "resumed" / "runs" / "sdclr-order0-seed0.json").read_text())
        assert first["accuracy"] == second["accuracy"]
        shutil.rmtree(tmp_path)
