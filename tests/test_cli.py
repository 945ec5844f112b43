from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from study.helpers import needs_data
from study.images import write_folder, write_truncated

from selfdamage.cli import main
from selfdamage.study import runner

# A study that trains in seconds; the tests below must fail before it trains at all.
TINY = ["--epochs", "1", "--max-steps", "1", "--width", "4", "--n-max", "300"]
TINY += ["--batch-size", "64", "--probe-shots", "20", "--probe-draws", "1", "--no-progress"]
TINY += ["--quiet"]


class Stop(Exception):
    """Raised in place of training, once every check before it has passed."""


class TestCli:
    def test_help_lists_subcommands(self) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "selfdamage", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "longtail" in out

    def test_no_command_prints_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([]) == 2
        assert "longtail" in capsys.readouterr().out

    def test_missing_data_message(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["longtail", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path)])
        assert exit_info.value.code == 2
        assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err

    @needs_data
    def test_end_to_end_tiny(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        args = ["longtail", "--epochs", "1", "--max-steps", "2", "--width", "4", "--n-max", "300"]
        args += ["--batch-size", "64", "--probe-shots", "20", "--probe-draws", "1"]
        args += ["--out", str(tmp_path), "--no-progress", "--quiet"]
        assert main(args) == 0
        printed = capsys.readouterr().out
        assert "sdclr - baseline" in printed and "damage AUROC" in printed
        results = json.loads((tmp_path / "results.json").read_text())
        assert results["settings"]["epochs"] == 1
        assert results["settings"]["lr"] == 0.5 and results["settings"]["temperature"] == 0.2
        assert results["settings"]["head"] == "lightly"  # lightly's 2-layer head, the default
        assert results["settings"]["prune_ratio"] == 0.9  # weight damage's default
        assert json.loads((tmp_path / "settings.json").read_text()) == results["settings"]
        assert results["provenance"]["device"]
        assert results["summary"].keys() == {"baseline", "sdclr", "sdclr - baseline"}
        assert [r["variant"] for r in results["runs"]] == ["baseline", "sdclr"]
        for run in results["runs"]:
            assert 0.0 <= run["accuracy"] <= 1.0 and 0.0 <= run["damage_auroc"] <= 1.0
            assert sum(run["class_counts"]) > 0 and len(run["losses"]) == 1
        assert (tmp_path / "groups.png").read_bytes()[:4] == b"\x89PNG"
        assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 2

        # --resume with a setting that changes the runs stops, and changes nothing.
        files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--prune-ratio", "0.5", "--resume", "--jobs", "2"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "prune_ratio: 0.9 there, 0.5 now. Resuming would mix" in err  # jobs may differ
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files
        # So does another --threads: it changes the numbers (the order of float sums).
        threads = results["settings"]["threads"]
        with pytest.raises(SystemExit):
            main([*args, "--prune-ratio", "0.9", "--resume", "--threads", str(threads + 1)])
        assert f"threads: {threads} there, {threads + 1} now." in capsys.readouterr().err
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files
        # With the same run settings, the finished runs are read back, not trained again.
        resumed = [*args, "--prune-ratio", "0.9", "--resume", "--workers", "0", "--cache-mb", "0"]
        assert main(resumed) == 0
        assert json.loads((tmp_path / "results.json").read_text())["runs"] == results["runs"]

    def test_missing_study_extra_says_what_to_install(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        with pytest.raises(SystemExit) as exit_info:
            main(["longtail", "--out", str(tmp_path / "out")])
        assert exit_info.value.code == 2
        assert 'pip install "selfdamage[study]"' in capsys.readouterr().err
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--epochs", "0"], "--epochs must be a positive integer, got --epochs=0."),
            (["--n-max", "-5"],
             "--n-max must be 0 (all samples) or a positive integer, got --n-max=-5."),
            (["--probe-shots", "-1"], "--probe-shots must be >= 0, got --probe-shots=-1."),
            (["--prune-ratio", "1"], "--prune-ratio must be in [0.0, 1.0), got --prune-ratio=1.0."),
            (["--seeds", "0", "1", "0"], "--seeds must be distinct, got --seeds=[0, 1, 0]"),
            (["--device", "gpu"], "--device must be a torch device such as 'cpu', 'cuda'"),
        ],
    )  # fmt: skip
    def test_bad_value_names_the_flag(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
    ) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["longtail", *argv, "--out", str(tmp_path / "out")])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out").exists()

    def test_temperature_with_byol(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit):
            main(["longtail", "--method", "byol", "--temperature", "0.2", "--out", str(tmp_path)])
        assert "temperature does not apply to method='byol'" in capsys.readouterr().err


class TestErrorsBeforeTraining:
    """Every bad option stops the command with exit status 2 and a message that names the
    option, the value and what is allowed, before any run trains."""

    def fails(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
        out = tmp_path / "out"
        args = ["longtail", *TINY, "--out", str(out), *argv]  # a later --out wins
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        assert not list(out.glob("checkpoints/*")) and not list(out.glob("runs/*"))
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    def test_out_is_a_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        (tmp_path / "file").write_text("")
        err = self.fails(tmp_path, capsys, "--out", str(tmp_path / "file"))
        file = tmp_path / "file"
        assert f"out_dir must be a folder, got out_dir='{file}', which is a file" in err
        assert (tmp_path / "file").read_text() == ""

    @pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
    def test_device_without_gpu(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        err = self.fails(tmp_path, capsys, "--device", "cuda")
        assert "device must be available here, got device='cuda'" in err
        assert "--device cpu" in err

    def test_device_not_a_device(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        err = self.fails(tmp_path, capsys, "--device", "gpu")
        assert "--device must be a torch device such as 'cpu', 'cuda'" in err

    @needs_data
    def test_probe_shots_beyond_the_data(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        err = self.fails(tmp_path, capsys, "--probe-shots", "100000")
        assert "probe_shots must be in [0, 6000], got probe_shots=100000" in err
        assert "per_class" not in err

    def test_batch_size_one(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        err = self.fails(tmp_path, capsys, "--batch-size", "1")
        assert "--batch-size must be >= 2, got --batch-size=1" in err
        assert "drop_last" not in err and ".eval()" not in err

    def test_same_seed_twice(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        err = self.fails(tmp_path, capsys, "--seeds", "0", "1", "0")
        assert "--seeds must be distinct, got --seeds=[0, 1, 0]" in err

    def test_truncated_image(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        write_folder(tmp_path / "data", {"a": 3, "b": 3}, {"a": 1, "b": 1})
        cut = write_truncated(tmp_path / "data" / "train" / "b" / "cut.png")
        err = self.fails(
            tmp_path, capsys, "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
            "--image-mode", "L", "--cache-mb", "0", "--workers", "0", "--n-max", "0",
        )  # fmt: skip
        assert err == (
            f"selfdamage longtail: error: {cut} is not a readable image (image file is "
            "truncated); remove or replace it.\n"
        )

    def test_reference_head_of_a_method_without_one(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        err = self.fails(tmp_path, capsys, "--method", "byol", "--head", "reference")
        assert "head='reference' does not apply to method='byol'" in err


def run_until_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> Any:
    """Runs the command up to its first run; returns that run's configuration."""
    configs = []

    def record(config: Any, *args: Any) -> None:
        configs.append(config)
        raise Stop

    monkeypatch.setattr(runner, "run_one", record)
    with pytest.raises(Stop):  # got past every check, to the first run
        main(["longtail", *TINY, "--out", str(tmp_path), *argv])
    return configs[0]


@needs_data
def test_channel_damage_runs_with_its_default_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The documented command; with 0.9 every method failed (channel damage cannot reach it).
    assert run_until_training(tmp_path, monkeypatch, "--damage", "channel").prune_ratio == 0.5
    assert json.loads((tmp_path / "settings.json").read_text())["prune_ratio"] == 0.5


@needs_data
def test_reference_head_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_until_training(tmp_path, monkeypatch, "--head", "reference").head == "reference"
    assert json.loads((tmp_path / "settings.json").read_text())["head"] == "reference"
