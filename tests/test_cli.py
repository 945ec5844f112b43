from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from study.helpers import needs_data

from selfdamage.cli import main


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
        assert results["provenance"]["device"]
        assert results["summary"].keys() == {"baseline", "sdclr", "sdclr - baseline"}
        assert [r["variant"] for r in results["runs"]] == ["baseline", "sdclr"]
        for run in results["runs"]:
            assert 0.0 <= run["accuracy"] <= 1.0 and 0.0 <= run["damage_auroc"] <= 1.0
            assert sum(run["class_counts"]) > 0 and len(run["losses"]) == 1
        assert (tmp_path / "groups.png").read_bytes()[:4] == b"\x89PNG"
        assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 2

    def test_missing_study_extra_says_what_to_install(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        with pytest.raises(SystemExit) as exit_info:
            main(["longtail", "--out", str(tmp_path / "out")])
        assert exit_info.value.code == 2
        assert 'pip install "selfdamage[study]"' in capsys.readouterr().err
        assert not (tmp_path / "out").exists()

    def test_bad_value_names_the_option(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit):
            main(["longtail", "--epochs", "0", "--out", str(tmp_path)])
        assert "epochs must be a positive integer, got epochs=0" in capsys.readouterr().err

    def test_temperature_with_byol(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit):
            main(["longtail", "--method", "byol", "--temperature", "0.2", "--out", str(tmp_path)])
        assert "temperature does not apply to method='byol'" in capsys.readouterr().err
