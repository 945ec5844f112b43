"""The study folder: the settings record, the checks before a resume, a new study's cleanup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from selfdamage.study import StudyConfig, run_study, runner
from selfdamage.study.outputs import check_resumable, make_folders, run_differences
from selfdamage.study.runner import schedule

from .helpers import TINY, needs_data


class TestRunDifferences:
    def stored(self, **kwargs: Any) -> dict[str, Any]:
        return json.loads(json.dumps(StudyConfig(**kwargs).resolved().to_dict()))

    def test_same_settings(self) -> None:
        assert run_differences(StudyConfig().resolved(), self.stored()) == {}

    def test_settings_that_do_not_change_a_run_may_differ(self) -> None:
        stored = self.stored(jobs=1, workers=2, cache_mb=2048, checkpoint_every=10, out_dir="a",
                             progress=True, chart=True)  # fmt: skip
        config = StudyConfig(jobs=2, workers=0, cache_mb=0, checkpoint_every=5, out_dir="b",
                             progress=False, chart=False, resume=True, download=True)  # fmt: skip
        assert run_differences(config.resolved(), stored) == {}

    def test_threads_change_a_run(self) -> None:
        # The number of threads changes the order of float sums, and so the numbers.
        stored = self.stored(threads=1)
        assert run_differences(StudyConfig(threads=2).resolved(), stored) == {"threads": (1, 2)}

    def test_a_record_without_threads_ran_with_torchs_thread_count(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        stored = self.stored(threads=1)
        del stored["threads"]  # results.json of 0.1: no option, torch's thread count
        monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
        assert run_differences(StudyConfig(threads=3).resolved(), stored) == {}
        assert run_differences(StudyConfig().resolved(), stored) == {}
        assert run_differences(StudyConfig(threads=1).resolved(), stored) == {"threads": (3, 1)}

    def test_lists_every_setting_that_changes_a_run(self) -> None:
        stored = self.stored(prune_ratio=0.9, seeds=(0, 1))
        config = StudyConfig(prune_ratio=0.5, seeds=(0,), head="reference", lr=0.1)
        assert run_differences(config.resolved(), stored) == {
            "head": ("lightly", "reference"),
            "prune_ratio": (0.9, 0.5),
            "lr": (0.5, 0.1),
            "seeds": ([0, 1], [0]),
        }

    def test_resolved_defaults_are_compared(self) -> None:
        # --damage channel without --prune-ratio is 0.5, not the stored weight default 0.9.
        differences = run_differences(StudyConfig(damage="channel").resolved(), self.stored())
        assert differences == {"damage": ("weight", "channel"), "prune_ratio": (0.9, 0.5)}

    def test_options_of_an_older_version_count_as_their_defaults(self) -> None:
        stored = self.stored()
        del stored["head"]  # results.json of 0.2 has no head: it used the method's
        assert run_differences(StudyConfig().resolved(), stored) == {}
        assert run_differences(StudyConfig(head="reference").resolved(), stored) == {
            "head": ("lightly", "reference")
        }


class TestFolders:
    def test_unfinished_writes_of_a_stopped_study_are_cleared(self, tmp_path: Path) -> None:
        # A process killed while writing leaves its temporary file beside the intact one.
        (tmp_path / "runs").mkdir()
        (tmp_path / "checkpoints").mkdir()
        left = ["results.json.41.tmp", "runs/a.json.41.tmp", "checkpoints/a.pt.41.tmp"]
        kept = ["checkpoints/a.pt", "runs/a.json", "notes.tmp"]
        for name in left + kept:
            (tmp_path / name).write_text("")
        make_folders(tmp_path)
        assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.*")) == sorted(kept)


class Stop(Exception):
    """Raised in place of training, once everything before it has run."""


class TestResumeChecks:
    """A resume reads runs back only if they were made with the same run settings."""

    def write_study(self, out: Path, **options: Any) -> None:
        settings = StudyConfig(out_dir=str(out), **options).resolved().to_dict()
        (out / "runs").mkdir(parents=True)
        (out / "runs" / "baseline-order0-seed0.json").write_text("{}")
        (out / "settings.json").write_text(json.dumps(settings))

    def check(self, out: Path, **options: Any) -> None:
        config = StudyConfig(out_dir=str(out), resume=True, **options).resolved()
        check_resumable(config, out, [spec.name for spec in schedule(config)])

    def test_same_settings_and_other_performance_options(self, tmp_path: Path) -> None:
        self.write_study(tmp_path, prune_ratio=0.9, jobs=1, threads=1, workers=2, cache_mb=2048)
        self.check(tmp_path, jobs=2, threads=1, workers=0, cache_mb=0, checkpoint_every=1,
                   progress=False)  # fmt: skip

    def test_other_threads_are_refused(self, tmp_path: Path) -> None:
        self.write_study(tmp_path, threads=2)
        with pytest.raises(ValueError, match=r"change its runs: threads: 2 there, 1 now\."):
            self.check(tmp_path, threads=1)

    def test_other_settings_are_listed(self, tmp_path: Path) -> None:
        self.write_study(tmp_path, prune_ratio=0.9)
        with pytest.raises(ValueError) as info:
            self.check(tmp_path, prune_ratio=0.5, head="reference")
        message = str(info.value)
        assert "head: 'lightly' there, 'reference' now; prune_ratio: 0.9 there, 0.5 now" in message
        assert "Resuming would mix its runs" in message

    def test_older_study_is_checked_against_its_results_json(self, tmp_path: Path) -> None:
        self.write_study(tmp_path, epochs=3)
        settings = json.loads((tmp_path / "settings.json").read_text())
        del settings["head"]  # written before the head was an option
        (tmp_path / "settings.json").unlink()
        (tmp_path / "results.json").write_text(json.dumps({"settings": settings}))
        self.check(tmp_path, epochs=3)
        with pytest.raises(ValueError, match=r"epochs: 3 there, 4 now.* in its results\.json"):
            self.check(tmp_path, epochs=4)

    def test_runs_without_recorded_settings_are_refused(self, tmp_path: Path) -> None:
        self.write_study(tmp_path)
        (tmp_path / "settings.json").unlink()
        with pytest.raises(ValueError, match="without a record of their settings"):
            self.check(tmp_path)

    def test_new_folder(self, tmp_path: Path) -> None:
        self.check(tmp_path / "new")  # nothing to compare: a new study

    def test_unreadable_settings(self, tmp_path: Path) -> None:
        self.write_study(tmp_path)
        (tmp_path / "settings.json").write_text("{")
        with pytest.raises(ValueError, match="cannot be read from"):
            self.check(tmp_path)

    @needs_data
    def test_new_study_replaces_the_previous_runs_before_training(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.write_study(tmp_path, prune_ratio=0.9, **TINY)
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "sdclr-order0-seed0.pt").write_text("")
        (tmp_path / "results.json").write_text("{}")
        (tmp_path / "runs" / "other.json").write_text("{}")  # not this schedule's

        def stop(*args: Any) -> None:
            raise Stop

        monkeypatch.setattr(runner, "run_one", stop)
        # A failing preflight leaves the previous study as it was.
        with pytest.raises(ValueError, match="probe_shots"):
            run_study(StudyConfig(out_dir=str(tmp_path), **{**TINY, "probe_shots": 10**5}))
        assert (tmp_path / "runs" / "baseline-order0-seed0.json").exists()
        with pytest.raises(Stop):
            run_study(StudyConfig(out_dir=str(tmp_path), prune_ratio=0.5, **TINY))
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["other.json"]
        assert list((tmp_path / "checkpoints").iterdir()) == []
        assert not (tmp_path / "results.json").exists()
        assert json.loads((tmp_path / "settings.json").read_text())["prune_ratio"] == 0.5
