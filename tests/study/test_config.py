from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

import pytest

from selfdamage.study.config import StudyConfig, add_arguments, from_arguments
from selfdamage.study.models import METHOD_TABLE

# Every flag of 0.1's `selfdamage longtail`, with the field it sets.
FLAGS_0_1 = {
    "--dataset": "dataset",
    "--data-dir": "data_dir",
    "--download": "download",
    "--imbalance-ratio": "imbalance_ratio",
    "--n-max": "n_max",
    "--class-orders": "class_orders",
    "--method": "method",
    "--damage": "damage",
    "--backbone": "backbone",
    "--width": "width",
    "--prune-ratio": "prune_ratio",
    "--temperature": "temperature",
    "--epochs": "epochs",
    "--batch-size": "batch_size",
    "--lr": "lr",
    "--weight-decay": "weight_decay",
    "--seeds": "seeds",
    "--balanced-reference": "balanced_reference",
    "--device": "device",
    "--max-steps": "max_steps",
    "--probe-shots": "probe_shots",
    "--probe-draws": "probe_draws",
    "--out": "out_dir",
    "--resume": "resume",
    "--no-progress": "progress",
}


def parse(*argv: str) -> StudyConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(list(argv)))


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            (
                {"method": "swav"},
                r"method must be one of 'simclr', 'moco', 'byol', 'barlowtwins', 'vicreg', "
                r"'dcl', 'dclw', 'simsiam', 'dino', 'nnclr', 'tico', got method='swav'\.",
            ),
            ({"dataset": "mnist"}, "dataset must be one of"),
            ({"epochs": 0}, r"epochs must be a positive integer, got epochs=0\."),
            ({"probe_shots": -1}, "probe_shots must be >= 0, got probe_shots=-1"),
            ({"seeds": []}, r"seeds must name at least one seed, got seeds=\[\]"),
            (
                {"prune_ratio": 1.0},
                r"prune_ratio must be in \[0\.0, 1\.0\), got prune_ratio=1\.0",
            ),
            ({"imbalance_ratio": 0.5}, "imbalance_ratio must be >= 1.0, got imbalance_ratio=0.5"),
            ({"n_max": -5}, r"n_max must be 0 \(all samples\) or a positive integer, got n_max="),
            ({"jobs": 0}, "jobs must be a positive integer"),
            ({"checkpoint_every": 0}, "checkpoint_every must be a positive integer"),
            ({"damage": "filter"}, "damage must be one of 'weight', 'channel'"),
            ({"temperature": 0.0}, r"temperature must be > 0\.0, got temperature=0\.0"),
            ({"seeds": (0, -1)}, r"seeds\[1\] must be >= 0, got seeds\[1\]=-1"),
            ({"method": "byol", "temperature": 0.2}, "temperature does not apply to method='byol'"),
            (
                {"batch_size": 1},
                r"batch_size must be >= 2, got batch_size=1\. Every method contrasts or "
                r"normalizes over the batch",
            ),
            (
                {"seeds": (0, 1, 0)},
                r"seeds must be distinct, got seeds=\[0, 1, 0\]: seed\(s\) \[0\] would train",
            ),
            (
                {"device": "gpu"},
                r"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', "
                r"got device='gpu'\.",
            ),
            ({"head": "mlp"}, r"head must be one of 'lightly', 'reference', got head='mlp'\."),
            (
                {"method": "byol", "head": "reference"},
                r"head='reference' does not apply to method='byol'.* in methods 'simclr', "
                r"'moco', 'dcl', 'dclw', 'nnclr'\.",
            ),
            ({"prune_ratio": -0.1}, r"prune_ratio must be in \[0\.0, 1\.0\)"),
        ],
    )
    def test_bad_options(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            StudyConfig(**kwargs)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"width": True}, "width must be an int, got width=True"),
            ({"lr": "0.1"}, "lr must be a float, got lr='0.1'"),
            ({"device": 0}, "device must be a str, got device=0"),
        ],
    )
    def test_wrong_types(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(TypeError, match=match):
            StudyConfig(**kwargs)

    def test_normalizes_sequences_and_paths(self) -> None:
        from pathlib import Path

        config = StudyConfig(seeds=[1, 2], out_dir=Path("a"), data_dir=Path("b"))  # type: ignore[arg-type]
        assert config.seeds == (1, 2) and config.out_dir == "a" and config.data_dir == "b"


class TestResolved:
    @pytest.mark.parametrize("method", ["simclr", "moco"])
    def test_0_1_values_for_contrastive_methods(self, method: str) -> None:
        config = StudyConfig(method=method).resolved()
        assert (config.lr, config.temperature, config.weight_decay) == (0.5, 0.2, 1e-4)

    def test_byol_has_no_temperature(self) -> None:
        config = StudyConfig(method="byol").resolved()
        assert (config.lr, config.temperature, config.weight_decay) == (0.5, None, 1e-4)

    def test_explicit_values_win(self) -> None:
        assert StudyConfig(lr=0.1, temperature=0.5).resolved().lr == 0.1

    def test_prune_ratio_is_the_damages(self) -> None:
        # 0.9 of the paper for weight damage; channel damage cannot reach 0.9 on a ResNet.
        assert StudyConfig().prune_ratio is None
        assert StudyConfig().resolved().prune_ratio == 0.9
        assert StudyConfig(damage="channel").resolved().prune_ratio == 0.5
        assert StudyConfig(damage="channel", prune_ratio=0.3).resolved().prune_ratio == 0.3
        assert StudyConfig(prune_ratio=0.0).resolved().prune_ratio == 0.0

    def test_every_method_has_every_method_dependent_option(self) -> None:
        keys = {frozenset(spec.defaults) for spec in METHOD_TABLE.values()}
        assert keys == {frozenset({"lr", "temperature", "optimizer", "weight_decay"})}

    def test_device_dependent_defaults(self) -> None:
        cpu = StudyConfig().resolved()
        assert cpu.amp is False and cpu.channels_last is False and cpu.threads >= 1  # type: ignore[operator]
        cuda = StudyConfig(device="cuda").resolved()
        assert cuda.amp is True and cuda.channels_last is True
        assert StudyConfig(device="cuda", amp=False).resolved().amp is False

    def test_to_dict_is_json(self) -> None:
        config = StudyConfig(seeds=(0, 1)).resolved()
        loaded = json.loads(json.dumps(config.to_dict()))
        assert StudyConfig(**loaded) == config


class TestCommandLine:
    def test_every_field_is_an_option_and_every_0_1_flag_kept(self) -> None:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        flags = {flag: action.dest for action in parser._actions for flag in action.option_strings}
        for flag, dest in FLAGS_0_1.items():
            assert flags.get(flag) == dest, flag
        fields = {f.name for f in dataclasses.fields(StudyConfig)}
        assert fields == set(flags.values()) - {"help"}

    def test_defaults_are_the_config_defaults(self) -> None:
        assert parse() == StudyConfig()

    def test_0_1_meanings(self) -> None:
        config = parse(
            "--n-max", "0", "--seeds", "1", "2", "--no-progress", "--out", "x",
            "--balanced-reference", "--lr", "0.1", "--max-steps", "3", "--download",
        )  # fmt: skip
        assert config.n_max is None and config.seeds == (1, 2) and config.progress is False
        assert config.out_dir == "x" and config.balanced_reference and config.lr == 0.1
        assert config.max_steps == 3 and config.download
        assert parse("--n-max", "200").n_max == 200

    def test_new_options(self) -> None:
        config = parse("--jobs", "2", "--threads", "1", "--checkpoint-every", "5", "--no-amp")
        assert (config.jobs, config.threads, config.checkpoint_every) == (2, 1, 5)
        assert config.amp is False and config.channels_last is None

    def test_damage_head_and_prune_ratio(self) -> None:
        assert parse("--damage", "channel").resolved().prune_ratio == 0.5
        assert parse("--damage", "channel", "--prune-ratio", "0.9").resolved().prune_ratio == 0.9
        assert parse().head == "lightly" and parse("--head", "reference").head == "reference"

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--epochs", "0"], r"^--epochs must be a positive integer, got --epochs=0\.$"),
            (["--batch-size", "1"], r"^--batch-size must be >= 2, got --batch-size=1\. Every "),
            (["--n-max", "-5"], r"^--n-max must be 0 \(all samples\) or a positive integer, "
                                r"got --n-max=-5\.$"),
            (["--imbalance-ratio", "0.5"],
             r"^--imbalance-ratio must be >= 1\.0, got --imbalance-ratio=0\.5\.$"),
            (["--group-thresholds", "20", "100"],
             r"^--group-thresholds must be \(many_above, few_below\) with few_below"),
            (["--seeds", "0", "-1"], r"^--seeds\[1\] must be >= 0, got --seeds\[1\]=-1\.$"),
            (["--threads", "0"], r"^--threads must be a positive integer, got --threads=0\.$"),
        ],
    )  # fmt: skip
    def test_errors_name_the_flag(self, argv: list[str], message: str) -> None:
        # StudyConfig(epochs=0) names the keyword (TestValidation); the command line the flag.
        with pytest.raises(ValueError, match=message):
            parse(*argv)

    def test_n_max_0_is_every_sample(self) -> None:
        assert parse("--n-max", "0").n_max is None
        assert StudyConfig(n_max=0) == StudyConfig(n_max=None)  # the same in Python

    def test_choices_are_checked_by_argparse(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            parse("--method", "swav")
        assert "invalid choice: 'swav'" in capsys.readouterr().err
