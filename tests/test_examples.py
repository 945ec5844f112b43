"""The runnable recipes in ``examples/``: their shape (fast) and a ``--fast`` run (slow).

CI runs every example with ``--fast`` directly (``.ci/run``); the slow test does the same
from pytest, for developers: ``pytest --runslow tests/test_examples.py``.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
NEEDS_DATA = {
    "simclr",
    "moco",
    "byol",
    "simclr_lightning",
    "ddp",
    "mine_tail_samples",
    "any_method",
    "own_data",
    "boosted_sdclr",
}
SELF_CONTAINED = {"wrap_backbones", "custom_damage"}


def _ids(paths: list[Path]) -> list[str]:
    return [path.stem for path in paths]


def _adds_fast_flag(tree: ast.Module) -> bool:
    """Whether the module calls ``<parser>.add_argument("--fast", ...)`` somewhere."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
            and any(isinstance(a, ast.Constant) and a.value == "--fast" for a in node.args)
        ):
            return True
    return False


def _has_main_guard(tree: ast.Module) -> bool:
    """Whether the module has a top-level ``if __name__ == "__main__": main()``."""
    for node in tree.body:
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__"
        ):
            return "main()" in ast.unparse(node)
    return False


class TestExampleFiles:
    def test_the_recipes_are_there(self) -> None:
        names = {path.stem for path in EXAMPLES}
        expected = NEEDS_DATA | SELF_CONTAINED
        assert names >= expected, f"missing examples: {sorted(expected - names)}"

    @pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
    def test_docstring_fast_flag_and_main(self, path: Path) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        docstring = ast.get_docstring(tree)
        assert docstring, f"{path.name} has no module docstring (the docs show it)"
        assert "--fast" in docstring, f"{path.name}'s docstring should say how to run it"
        assert _adds_fast_flag(tree), f"{path.name} has no --fast argument (CI runs it)"
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert "main" in functions, f"{path.name} has no main()"
        assert _has_main_guard(tree), f'{path.name} lacks if __name__ == "__main__": main()'


DOCS_DIR = EXAMPLES_DIR.parent / "docs"
INCLUDE = re.compile(
    r"^\.\. literalinclude:: \.\./examples/(?P<file>\S+)\n"
    r"(?P<options>(?:[ \t]+:.*\n)+)",
    re.MULTILINE,
)
PIECES = [
    (page.stem, match["file"], dict(re.findall(r":([\w-]+):[ \t]*(.*)", match["options"])))
    for page in sorted(DOCS_DIR.glob("*.rst"))
    for match in INCLUDE.finditer(page.read_text(encoding="utf-8"))
    if ":start-after:" in match["options"]
]


def _piece(file: str, options: dict[str, str]) -> str:
    """The lines of ``examples/<file>`` that a ``literalinclude`` with markers shows."""
    text = (EXAMPLES_DIR / file).read_text(encoding="utf-8")
    after = text.split(options["start-after"], 1)[1].split("\n", 1)[1]
    return after.split(options["end-before"], 1)[0] if "end-before" in options else after


def test_the_docs_include_pieces_by_marker() -> None:
    assert ("quickstart", "wrap_backbones.py") in [(page, file) for page, file, _ in PIECES]


@pytest.mark.parametrize("page, file, options", PIECES, ids=[f"{p}-{f}" for p, f, _ in PIECES])
def test_a_piece_shown_in_the_docs_runs_on_its_own(
    page: str, file: str, options: dict[str, str]
) -> None:
    """What the page shows is all a reader copies: it must bring its own imports."""
    piece = _piece(file, options)
    result = subprocess.run(
        [sys.executable, "-c", piece],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"docs/{page}.rst's piece of {file} fails:\n{result.stderr}"


def _command(path: Path, tmp_path: Path) -> list[str]:
    if "ddp" in path.stem:
        launcher = [sys.executable, "-m", "torch.distributed.run"]
        return [*launcher, "--standalone", "--nproc_per_node=2", str(path), "--fast"]
    extra = {
        "mine_tail_samples": ["--out", str(tmp_path / "top.png")],
        "any_method": ["--method", "all"],
    }.get(path.stem, [])
    return [sys.executable, str(path), "--fast", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_example_runs_with_fast(path: Path, tmp_path: Path) -> None:
    from selfdamage.data import FASHION_MNIST_DIRS  # imports torch: only for the slow test

    # The examples run in tmp_path, so only the Debian package's absolute path counts.
    if path.stem in NEEDS_DATA and not Path(FASHION_MNIST_DIRS[0]).is_dir():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    # One thread per process: on a busy machine two threads each can run 4x slower.
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        _command(path, tmp_path),
        cwd=tmp_path,  # the Lightning example writes runs/ under the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{path.name} printed nothing"
    if path.stem == "mine_tail_samples":
        assert (tmp_path / "top.png").stat().st_size > 0
