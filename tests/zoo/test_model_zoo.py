"""The model zoo: weight and channel damage on torchvision's and timm's classifiers.

Slow (about 4 minutes on 2 busy CPU cores): run with ``pytest --runslow tests/zoo``. Known
failures are strict expected failures (``EXPECTED_FAILURES`` in ``models.py``): the test
checks that they still fail *with the recorded error*, and fails once they pass, so the entry
and the docs' compatibility table (``python benchmarks/zoo_table.py``) are updated with the fix.
"""

from __future__ import annotations

import pytest

from .checks import KINDS, Outcome, run_case, run_case_isolated
from .models import EXPECTED_FAILURES, ISOLATED, MODELS, has_timm

CASES = [
    pytest.param(
        model.name,
        kind,
        id=f"{model.name}-{kind}",
        marks=[pytest.mark.skipif(not has_timm(), reason="timm is not installed")]
        if model.library == "timm"
        else [],
    )
    for model in MODELS
    for kind in model.kinds
]


@pytest.mark.slow
class TestModelZoo:
    @pytest.mark.parametrize(("name", "kind"), CASES)
    def test_damage(self, name: str, kind: str) -> None:
        outcome: Outcome
        if (name, kind) in ISOLATED:
            outcome = run_case_isolated(name, kind)
        else:
            outcome = run_case(name, kind)
        expected = EXPECTED_FAILURES.get((name, kind))
        if expected is None:
            assert outcome.ok, f"{name} {kind} damage: {outcome.error}: {outcome.message}"
            return
        if outcome.ok:
            pytest.fail(
                f"{name} {kind} damage now works (strict expected failure): remove it from "
                "EXPECTED_FAILURES in tests/zoo/models.py and regenerate the docs table with "
                "`python benchmarks/zoo_table.py`."
            )
        assert outcome.matches(expected.error, expected.fragment), (
            f"{name} {kind} damage fails differently than recorded: expected "
            f"{expected.error} containing {expected.fragment!r}, got "
            f"{outcome.error}: {outcome.message}"
        )
        pytest.xfail(f"{expected.error}: {expected.reason}")


class TestZooTables:
    """The zoo's bookkeeping, cheap enough for the default test run."""

    def test_expected_failures_name_zoo_cases(self) -> None:
        cases = {(model.name, kind) for model in MODELS for kind in model.kinds}
        assert all(kind in KINDS for _, kind in cases)
        unknown = (set(EXPECTED_FAILURES) | ISOLATED) - cases
        assert not unknown, f"EXPECTED_FAILURES or ISOLATED name no zoo case: {unknown}"

    def test_names_are_unique(self) -> None:
        names = [model.name for model in MODELS]
        assert len(names) == len(set(names))
