"""The study's variants: names, checks, the plug-ins in a run, paired differences, resume."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from selfdamage.cli import main
from selfdamage.longtail import BoostedRandAugment, MomentumLoss
from selfdamage.study import StudyConfig, format_table, run_study
from selfdamage.study._plugins import RunPlugins, study_temperature
from selfdamage.study._variants import Variant, parse_variant, study_variants
from selfdamage.study.outputs import run_differences
from selfdamage.study.report import summarize
from selfdamage.study.runner import schedule

from .helpers import run_record


def names(**options: Any) -> list[str]:
    return [v.name for v in study_variants(StudyConfig(**options))]


class TestNames:
    def test_default_design_is_unchanged(self) -> None:
        assert names() == ["baseline", "sdclr"]
        assert names(balanced_reference=True) == ["baseline", "sdclr", "balanced"]
        assert [r.name for r in schedule(StudyConfig())] == [
            "baseline-order0-seed0",
            "sdclr-order0-seed0",
        ]

    def test_method_name_is_the_baseline_and_plugins_are_canonical(self) -> None:
        assert names(variants=["simclr", "sdclr", "sdclr+gh+bcl"]) == [
            "baseline",
            "sdclr",
            "sdclr+bcl+gh",
        ]
        assert parse_variant("dcl+ts", "dcl") == Variant("baseline", ts=True)

    def test_global_options_apply_to_every_variant_but_balanced(self) -> None:
        got = names(boost="bcl", gh=True, balanced_reference=True)
        assert got == ["baseline+bcl+gh", "sdclr+bcl+gh", "balanced"]
        got = names(variants=["simclr", "sdclr+bcl"], temperature_schedule="cosine")
        assert got == ["baseline+ts", "sdclr+bcl+ts"]

    def test_balanced_reference_is_added_to_a_list_without_it(self) -> None:
        assert names(variants=["sdclr", "sdclr+bcl"], balanced_reference=True) == [
            "sdclr",
            "sdclr+bcl",
            "balanced",
        ]


class TestChecks:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"variants": ["simclr", "sdclr+xyz"]}, r"variants has an unknown name, got 'sdclr\+xyz'\. Allowed: .*'baseline'.*'\+bcl', '\+ts', '\+gh'"),  # noqa: E501
            ({"variants": ["moco"]}, r"unknown name, got 'moco'.*the method's name, 'simclr'"),
            ({"variants": ["sdclr+bcl+bcl"]}, "unknown name, got 'sdclr\\+bcl\\+bcl'"),
            ({"variants": ["simclr", "baseline"]}, r"variants must be distinct.*\['baseline'\]"),
            ({"variants": ["sdclr", "sdclr+bcl"], "boost": "bcl"}, r"distinct.*\['sdclr\+bcl'\] would be trained twice \(boost, temperature_schedule and gh add"),  # noqa: E501
            ({"variants": ["balanced", "sdclr"]}, "must start with the variant the others"),
            ({"variants": ["sdclr", "balanced+gh"]}, "'balanced' is the reference without"),
            ({"variants": []}, "variants must list at least one variant name"),
            ({"boost": "momentum"}, "boost must be one of 'bcl', got boost='momentum'"),
            ({"temperature_schedule": "step"}, "temperature_schedule must be one of 'cosine'"),
            ({"method": "byol", "temperature_schedule": "cosine"}, r"variant 'baseline\+ts': temperature_schedule='cosine'.*got method='byol', which has none; allowed: simclr, moco, dcl, dclw, nnclr"),  # noqa: E501
            ({"method": "moco", "variants": ["moco", "sdclr+bcl"]}, r"variant 'sdclr\+bcl': 'bcl' needs.*got method='moco'; allowed: simclr, dcl, dclw"),  # noqa: E501
            ({"method": "vicreg", "gh": True}, r"'gh' needs.*method='vicreg'"),
            ({"gh": True, "epochs": 1}, r"'gh' needs epochs >= 2.*got epochs=1"),
        ],
    )  # fmt: skip
    def test_errors_name_argument_value_and_allowed(
        self, options: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            StudyConfig(**options)

    def test_command_line_error_before_training(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["longtail", "--method", "byol", "--temperature-schedule", "cosine"]
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--out", str(tmp_path / "out")])
        assert exit_info.value.code == 2
        assert "method='byol', which has none" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()

    def test_command_line_flags(self) -> None:
        import argparse

        from selfdamage.study.config import add_arguments, from_arguments

        parser = argparse.ArgumentParser()
        add_arguments(parser)
        argv = ["--variants", "simclr", "sdclr+ts", "--boost", "bcl", "--gh"]
        config = from_arguments(parser.parse_args([*argv, "--temperature-schedule", "cosine"]))
        assert config.variants == ("simclr", "sdclr+ts")
        assert [v.name for v in study_variants(config)] == ["baseline+bcl+ts+gh", "sdclr+bcl+ts+gh"]
        assert (config.boost, config.temperature_schedule, config.gh) == ("bcl", "cosine", True)
        default = from_arguments(parser.parse_args([]))
        assert (default.variants, default.boost, default.temperature_schedule) == (None,) * 3


class TestRecords:
    def test_default_record_has_no_new_keys(self) -> None:
        record = StudyConfig().to_dict()
        assert not {"variants", "boost", "temperature_schedule", "gh"} & set(record)
        record = StudyConfig(variants=("simclr", "sdclr+bcl"), gh=True).to_dict()
        assert record["variants"] == ["simclr", "sdclr+bcl"] and record["gh"] is True
        assert "boost" not in record

    def test_old_record_resumes_and_new_options_count_as_a_change(self) -> None:
        old = StudyConfig().resolved().to_dict()  # as 1.0 wrote it: no variant keys
        assert run_differences(StudyConfig().resolved(), old) == {}
        now = StudyConfig(variants=("simclr", "sdclr+bcl")).resolved()
        assert run_differences(now, old) == {"variants": (None, ["simclr", "sdclr+bcl"])}
        assert run_differences(StudyConfig(gh=True).resolved(), old) == {"gh": (False, True)}

    def test_temperature_schedule_of_a_short_and_a_long_study(self) -> None:
        # Kukleva et al.: tau 1.0 at epoch 0, 0.1 half a period later (period 400 epochs).
        short = study_temperature(StudyConfig(epochs=30), Variant("sdclr", ts=True))
        long = study_temperature(StudyConfig(epochs=800), Variant("sdclr", ts=True))
        assert short(0) == pytest.approx(1.0) and short(15) == pytest.approx(0.1)
        assert long(200) == pytest.approx(0.1) and long(100) == pytest.approx(0.55)
        assert study_temperature(StudyConfig(temperature=0.3), Variant("sdclr")) == 0.3


def test_summary_has_a_paired_difference_per_variant() -> None:
    runs = [
        run_record("baseline", 0, 0.70, 0.50, order=0),
        run_record("sdclr", 0, 0.73, 0.58, order=0),
        run_record("sdclr+bcl", 0, 0.75, 0.60, order=0),
        run_record("balanced", 0, 0.80, 0.70, order=0),
        run_record("baseline", 0, 0.74, 0.54, order=1),
        run_record("sdclr", 0, 0.75, 0.56, order=1),
        run_record("sdclr+bcl", 0, 0.78, 0.62, order=1),
        run_record("balanced", 0, 0.80, 0.70, order=1),
    ]
    summary = summarize(runs, ["baseline", "sdclr", "sdclr+bcl", "balanced"])
    assert list(summary)[4:] == ["sdclr - baseline", "sdclr+bcl - baseline", "gap_closed"]
    bcl = summary["sdclr+bcl - baseline"]
    # by hand: differences 0.05 and 0.04; mean 0.045; std |0.05 - 0.04| / sqrt(2);
    # ci95 = t(0.975, 1) * std / sqrt(2) = 12.7062 * 0.01 / 2
    assert bcl["accuracy"]["mean"] == pytest.approx(0.045, abs=1e-12)
    assert bcl["accuracy"]["ci95"] == pytest.approx(12.7062 * 0.01 / 2, abs=1e-12)
    assert bcl["few"]["mean"] == pytest.approx(0.09, abs=1e-12)
    assert bcl["runs"] == 2 and bcl["orders"] == 2
    table = format_table({"summary": summary})
    # accuracy: 4.5 ± 12.7062 * 0.01 / 2 = 6.35 points; Few: 9.0 ± 12.7062 * 0.02 / 2 = 12.7
    line = "95% interval of sdclr+bcl - baseline over 2 class orders: overall +4.5 ± 6.4, Few +9.0 ± 12.7"  # noqa: E501
    assert line in table and "95% interval of sdclr - baseline over 2 class orders" in table
    other = summarize(runs, ["sdclr", "sdclr+bcl"])
    assert list(other) == ["sdclr", "sdclr+bcl", "sdclr+bcl - sdclr"]
    assert other["sdclr+bcl - sdclr"]["accuracy"]["mean"] == pytest.approx(0.025, abs=1e-12)


class TestBoostedViews:
    def _plugins(self, score: float) -> RunPlugins:
        tracker = MomentumLoss(6)
        return RunPlugins(tracker, None, 0, BoostedRandAugment(), [score] * 6, random.Random(0))

    def test_score_zero_leaves_every_view_as_it_is(self) -> None:
        x0, x1 = torch.randn(6, 1, 12, 12), torch.randn(6, 1, 12, 12)
        mean, std = torch.tensor(0.5).view(1, 1, 1, 1), torch.tensor(0.25).view(1, 1, 1, 1)
        y0, y1 = self._plugins(0.0).boost(x0, x1, torch.arange(6), mean, std)
        assert torch.equal(y0, x0) and torch.equal(y1, x1)

    def test_score_one_augments_on_the_pixel_grid(self) -> None:
        generator = torch.Generator().manual_seed(0)
        pixels = torch.randint(0, 256, (6, 3, 12, 12), generator=generator).float() / 255
        mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
        x = (pixels - mean) / std
        y0, _ = self._plugins(1.0).boost(x, x.clone(), torch.arange(6), mean, std)
        changed = [not torch.allclose(y0[i], x[i]) for i in range(6)]
        assert sum(changed) >= 3  # an operation at magnitude 30 on every view
        restored = (y0 * std + mean) * 255  # back on the 0..255 grid of an 8-bit image
        assert torch.allclose(restored, restored.round(), atol=1e-3)


def _noise_folder(root: Path, counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for split, scale in (("train", 1), ("test", 0)):
        for name, count in counts.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count if scale else 4):
                pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")
    return root


_TINY = {
    "dataset": "folder",
    "profile": "exponential",
    "imbalance_ratio": 4.0,
    "n_max": 16,
    "width": 2,
    "batch_size": 8,
    "max_steps": 2,
    "probe_shots": 2,
    "probe_draws": 1,
    "workers": 0,
    "progress": False,
    "chart": False,
}


_TINY_TWIN = pytest.mark.filterwarnings("ignore:the twin masks every entry")


@pytest.mark.slow
@_TINY_TWIN
def test_variants_study_reports_each_paired_difference(tmp_path: Path) -> None:
    data = _noise_folder(tmp_path / "data", {"a": 16, "b": 16, "c": 16})
    config = StudyConfig(data_dir=str(data), out_dir=str(tmp_path / "out"), epochs=2,
                         class_orders=2, variants=("simclr", "sdclr", "sdclr+bcl+ts+gh"),
                         **_TINY)  # fmt: skip
    results = run_study(config)
    runs = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*.json")]
    assert len(runs) == 6
    by = {(r["variant"], r["order"]): r for r in runs}
    summary = results["summary"]
    for variant in ("sdclr", "sdclr+bcl+ts+gh"):
        row = summary[f"{variant} - baseline"]
        for metric in ("accuracy", "few", "knn"):
            a, b = (by[(variant, o)][metric] - by[("baseline", o)][metric] for o in (0, 1))
            assert row[metric]["mean"] == pytest.approx((a + b) / 2, abs=1e-12)
            # two class orders: std |a - b| / sqrt(2), half-width t(0.975, 1) * std / sqrt(2)
            assert row[metric]["ci95"] == pytest.approx(12.7062 * abs(a - b) / 2, abs=1e-12)
    state = torch.load(tmp_path / "out" / "checkpoints" / "sdclr+bcl+ts+gh-order0-seed0.pt",
                       weights_only=True)  # fmt: skip
    assert int(state["plugins"]["momentum_loss"]["epochs"]) == 2  # BCL: stepped per epoch
    assert state["plugins"]["harmonization"]["_extra_state"] == {"epoch": 1}  # GH on
    schedule_state = state["model"]["temperature_schedule._extra_state"]
    assert schedule_state["steps"] == 2  # the cosine schedule: stepped once per epoch
    plain = torch.load(tmp_path / "out" / "checkpoints" / "sdclr-order0-seed0.pt",
                       weights_only=True)  # fmt: skip
    assert "plugins" not in plain and "temperature_schedule._extra_state" not in plain["model"]


@_TINY_TWIN
def test_bcl_run_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _noise_folder(tmp_path / "data", {"a": 16, "b": 16, "c": 16})
    options = {**_TINY, "data_dir": str(data), "epochs": 3, "checkpoint_every": 2,
               "variants": ("sdclr+bcl+gh",)}  # fmt: skip
    run_study(StudyConfig(out_dir=str(tmp_path / "straight"), **options))
    save = torch.save

    def crash_after_second_epoch(obj: Any, path: Any) -> None:
        save(obj, path)
        if obj["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_study(StudyConfig(out_dir=str(tmp_path / "resumed"), **options))
    monkeypatch.setattr(torch, "save", save)
    run_study(StudyConfig(out_dir=str(tmp_path / "resumed"), resume=True, **options))
    name = "sdclr+bcl+gh-order0-seed0"
    straight, resumed = (
        torch.load(tmp_path / where / "checkpoints" / f"{name}.pt", weights_only=True)
        for where in ("straight", "resumed")
    )
    assert straight["losses"] == resumed["losses"] and len(resumed["losses"]) == 3
    for part in ("momentum_loss", "harmonization"):
        for key, value in straight["plugins"][part].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(resumed["plugins"][part][key], value), (part, key)
    assert float(straight["plugins"]["momentum_loss"]["scores"].max()) == 1.0  # boosted
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    first, second = (
        json.loads((tmp_path / where / "runs" / f"{name}.json").read_text())
        for where in ("straight", "resumed")
    )
    assert first["accuracy"] == second["accuracy"] and first["knn"] == second["knn"]


def test_listing_the_default_variants_changes_nothing() -> None:
    explicit = StudyConfig(variants=("simclr", "sdclr"))
    assert [s.name for s in schedule(explicit)] == [s.name for s in schedule(StudyConfig())]
    assert explicit.to_dict()["variants"] == ["simclr", "sdclr"]


@_TINY_TWIN
def test_plugins_compose_with_channel_damage(tmp_path: Path) -> None:
    data = _noise_folder(tmp_path / "data", {"a": 16, "b": 16, "c": 16})
    config = StudyConfig(data_dir=str(data), out_dir=str(tmp_path / "out"), epochs=2,
                         damage="channel", variants=("sdclr+bcl+gh",), **_TINY)  # fmt: skip
    run_study(config)
    name = "sdclr+bcl+gh-order0-seed0"
    record = json.loads((tmp_path / "out" / "runs" / f"{name}.json").read_text())
    assert all(np.isfinite(record["losses"]))
    state = torch.load(tmp_path / "out" / "checkpoints" / f"{name}.pt", weights_only=True)
    # the twin is channel damage's: whole channels (every 3x3 kernel kept or masked as one,
    # unlike weight damage's single entries), and its norm's, masked
    conv = state["model"]["wrapper.masks.backbone.layer1.0.conv1.weight"].flatten(2)
    assert torch.equal(conv.all(dim=2), conv.any(dim=2)) and not bool(conv.all())
    assert "wrapper.masks.backbone.layer1.0.bn1.weight" in state["model"]
    tracked = state["plugins"]["momentum_loss"]
    assert int(tracked["epochs"]) == 2 and bool((tracked["scores"] > 0).any())
