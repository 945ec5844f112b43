from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import selfdamage
from selfdamage import study
from selfdamage.study import StudyConfig, run_study, runner, training
from selfdamage.study.runner import RunSpec, _preflight, schedule

from .helpers import TINY, needs_data


class TestSchedule:
    def test_order_seed_variant(self) -> None:
        config = StudyConfig(class_orders=2, seeds=(0, 1), balanced_reference=True)
        names = [spec.name for spec in schedule(config)]
        assert len(names) == 12
        assert names[:3] == ["baseline-order0-seed0", "sdclr-order0-seed0", "balanced-order0-seed0"]
        assert names[-1] == "balanced-order1-seed1"

    def test_name(self) -> None:
        assert RunSpec("baseline", 2, 7).name == "baseline-order2-seed7"


class TestErrorsBeforeTraining:
    def test_missing_data_says_how_to_get_it(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
            run_study(StudyConfig(out_dir=str(tmp_path), data_dir=str(tmp_path / "nothing-here")))

    @pytest.mark.parametrize("module", ["matplotlib", "tqdm"])
    def test_missing_study_extra(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
    ) -> None:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
        with pytest.raises(ImportError, match=r'pip install "selfdamage\[study\]"') as info:
            run_study(StudyConfig(out_dir=str(tmp_path / "out")))
        assert module in str(info.value)
        assert not (tmp_path / "out").exists()  # nothing trained, nothing written

    def test_no_tqdm_needed_without_progress(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "tqdm", None)
        with pytest.raises(FileNotFoundError):  # got past the check, to the data
            run_study(StudyConfig(out_dir=str(tmp_path), data_dir="/nothing", progress=False))

    def test_no_matplotlib_needed_without_chart(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        with pytest.raises(FileNotFoundError):  # got past the check, to the data
            run_study(StudyConfig(out_dir=str(tmp_path), data_dir="/nothing", chart=False))

    @needs_data
    def test_options_that_do_not_fit_fail_before_training(self, tmp_path: Path) -> None:
        # Channel damage cannot reach 0.9 on this backbone: the SDCLR model says so before
        # the baseline trains (0.1 trained the baseline first).
        config = StudyConfig(out_dir=str(tmp_path), damage="channel", prune_ratio=0.9, **TINY)
        with pytest.raises(ValueError, match="max_channel_ratio"):
            run_study(config)
        assert list((tmp_path / "checkpoints").iterdir()) == []

    @needs_data
    def test_channel_damage_default_ratio_fits_the_default_study(self) -> None:
        # The documented `selfdamage longtail --damage channel`: 0.9 fails for every method.
        config = StudyConfig(damage="channel").resolved()
        assert config.prune_ratio == 0.5
        _preflight(config, runner._load(config), schedule(config))  # builds the SDCLR model

    @needs_data
    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"probe_shots": 6001}, r"probe_shots must be in \[0, 6000\], got probe_shots=6001"),
            (  # 740: the long-tailed subset, sum(int(300 * 100 ** (-i / 9)) for i in range(10))
                {"batch_size": 741},
                r"batch_size must be at most 740, got batch_size=741: the training subset "
                r"of baseline-order0-seed0 has 740 images",
            ),
        ],
    )
    def test_options_that_do_not_fit_the_data(
        self, tmp_path: Path, options: dict[str, Any], match: str
    ) -> None:
        with pytest.raises(ValueError, match=match):
            run_study(StudyConfig(out_dir=str(tmp_path), **{**TINY, **options}))
        assert list((tmp_path / "checkpoints").iterdir()) == []

    @pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
    def test_unavailable_device(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"device must be available here, got device='cuda'"):
            run_study(StudyConfig(out_dir=str(tmp_path / "out"), device="cuda"))
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("where", ["file", "below a file"])
    def test_out_dir_not_a_folder(self, tmp_path: Path, where: str) -> None:
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" if where == "file" else tmp_path / "file" / "out"
        match = "which is a file" if where == "file" else "must be a folder that can be created"
        with pytest.raises(ValueError, match=rf"out_dir .*{match}"):
            run_study(StudyConfig(out_dir=str(out)))


class TestPublicNames:
    def test_removed_run_longtail_study_names_its_replacement(self) -> None:
        with pytest.raises(ImportError) as caught:
            from selfdamage.study import run_longtail_study  # noqa: F401
        assert str(caught.value) == (
            "selfdamage.study.run_longtail_study was removed in selfdamage 1.0; use "
            "run_study(StudyConfig(...)) with the same keyword names instead."
        )
        assert "run_longtail_study" not in study.__all__

    def test_other_missing_names_stay_attribute_errors(self) -> None:
        with pytest.raises(AttributeError, match="has no attribute 'run_longtail'"):
            study.run_longtail  # noqa: B018

    def test_names_importable(self) -> None:
        assert study.DATASETS == ("fashion-mnist", "cifar10", "cifar100", "folder", "list")
        methods = ("simclr", "moco", "byol", "barlowtwins", "vicreg", "dcl", "dclw")
        assert (*methods, "simsiam", "dino", "nnclr", "tico") == study.METHODS
        assert study.BACKBONES == ("resnet18-cifar", "resnet18")
        assert study.VARIANTS == ("baseline", "sdclr", "balanced")
        assert callable(study.format_table)


@needs_data
class TestStudy:
    def test_resume_continues_exactly(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # MoCo: the memory bank resumes too. Checkpoints every 2 epochs (and at the last).
        options = {**TINY, "epochs": 3, "method": "moco", "checkpoint_every": 2}
        run_study(StudyConfig(out_dir=str(tmp_path / "straight"), **options))

        write = training.write_atomically
        saved: list[int] = []

        def crash_after_second_epoch(path: Path, content: Any) -> None:
            write(path, content)
            saved.append(torch.load(path, weights_only=True)["epoch"])
            if saved[-1] == 2:
                raise KeyboardInterrupt

        monkeypatch.setattr(training, "write_atomically", crash_after_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            run_study(StudyConfig(out_dir=str(tmp_path / "resumed"), **options))
        assert saved == [2]  # no checkpoint after epoch 1
        monkeypatch.setattr(training, "write_atomically", write)
        run_study(StudyConfig(out_dir=str(tmp_path / "resumed"), resume=True, **options))
        assert not list(tmp_path.rglob("*.tmp"))  # every file written whole, then renamed

        name = "baseline-order0-seed0.pt"
        straight = torch.load(tmp_path / "straight" / "checkpoints" / name, weights_only=True)
        resumed = torch.load(tmp_path / "resumed" / "checkpoints" / name, weights_only=True)
        assert straight["losses"] == resumed["losses"] and len(resumed["losses"]) == 3
        assert {"loss.memory_bank.bank", "loss.memory_bank.bank_ptr"} <= set(straight["model"])
        for key, value in straight["model"].items():  # the bank included
            assert torch.equal(resumed["model"][key], value), key
        first = json.loads((tmp_path / "straight" / "runs" / "sdclr-order0-seed0.json").read_text())
        second = json.loads((tmp_path / "resumed" / "runs" / "sdclr-order0-seed0.json").read_text())
        assert first["accuracy"] == second["accuracy"]
        assert first["losses"] == second["losses"]

    def test_parallel_jobs_give_the_same_numbers(self, tmp_path: Path) -> None:
        options = {**TINY, "epochs": 1, "class_orders": 2, "threads": 1}
        one = run_study(StudyConfig(out_dir=str(tmp_path / "one"), jobs=1, **options))
        two = run_study(StudyConfig(out_dir=str(tmp_path / "two"), jobs=2, **options))
        assert [r["name"] for r in one["runs"]] == [r["name"] for r in two["runs"]]
        for a, b in zip(one["runs"], two["runs"]):
            a.pop("wall_time_s"), b.pop("wall_time_s")
            assert a == b, a["name"]  # bit-exact: every loss, metric and draw
        assert two["settings"]["jobs"] == 2 and two["settings"]["threads"] == 1

    def test_without_chart_no_matplotlib_and_no_png(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        results = run_study(StudyConfig(out_dir=str(tmp_path), epochs=1, chart=False, **TINY))
        assert json.loads((tmp_path / "results.json").read_text()) == results
        assert not (tmp_path / "groups.png").exists()

    def test_results_record_settings_and_provenance(self, tmp_path: Path) -> None:
        results = run_study(StudyConfig(out_dir=str(tmp_path), epochs=1, method="byol", **TINY))
        settings = results["settings"]
        assert settings["lr"] == 0.5 and settings["temperature"] is None  # resolved
        assert settings["weight_decay"] == 1e-4 and settings["amp"] is False
        assert settings == json.loads((tmp_path / "results.json").read_text())["settings"]
        provenance = results["provenance"]
        assert provenance.keys() == {
            "selfdamage",
            "git_commit",
            "torch",
            "lightly",
            "device",
            "wall_time_s",
        }
        assert provenance["torch"] == torch.__version__
        assert provenance["selfdamage"] == selfdamage.__version__
        for run in results["runs"]:
            assert run["wall_time_s"]["pretrain"] > 0 and len(run["wall_time_s"]["epochs"]) == 1
