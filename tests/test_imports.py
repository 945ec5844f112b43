"""The package's import rules, read from the source with ``ast`` (nothing is imported).

- No import circle inside ``selfdamage`` (imports under ``if TYPE_CHECKING:`` excepted).
- The core (wrapper, masks, twin norm, damage, and their infrastructure) imports none of
  adapters, lightning, data, evaluation, study, cli.
- The mask maths imports no package module but the argument checks.
- Only ``selfdamage/damage/_torch_pruning_graph.py`` touches torch-pruning's dependency graph.
- No module is much over 400 lines, no function over 60 lines of code (docstring excluded).
- ``docs/architecture.rst``'s module map names every module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "selfdamage"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.rst"
CORE = {
    "selfdamage",
    "selfdamage._checkpoint",
    "selfdamage._checks",
    "selfdamage._default_damage",
    "selfdamage._loaded_masks",
    "selfdamage._mirror",
    "selfdamage.masks",
    "selfdamage.twin_norm",
    "selfdamage.wrapper",
}
OUTSIDE_CORE = ("adapters", "lightning", "data", "evaluation", "study", "cli", "longtail")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(name: str) -> set[str]:
    """Package modules that ``name`` imports at run time (anywhere in the file)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def is_core(name: str) -> bool:
    return name in CORE or name == "selfdamage.damage" or name.startswith("selfdamage.damage.")


class TestImportRules:
    def test_no_import_circle(self) -> None:
        state: dict[str, str] = {}

        def visit(node: str, path: list[str]) -> None:
            state[node] = "open"
            for nxt in sorted(GRAPH[node]):
                if state.get(nxt) == "open":
                    circle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                    pytest.fail(f"import circle: {' -> '.join(circle)}")
                if nxt not in state:
                    visit(nxt, [*path, nxt])
            state[node] = "done"

        for name in sorted(GRAPH):
            if name not in state:
                visit(name, [name])

    @pytest.mark.parametrize("name", sorted(n for n in MODULES if is_core(n)))
    def test_core_imports_no_outer_layer(self, name: str) -> None:
        outer = {
            imported
            for imported in GRAPH[name]
            if imported.split(".")[1:2] and imported.split(".")[1] in OUTSIDE_CORE
        }
        assert not outer, f"{name} imports {sorted(outer)}"

    def test_mask_maths_imports_only_the_checks(self) -> None:
        assert GRAPH["selfdamage.damage.masks"] <= {"selfdamage._checks"}

    def test_checks_import_nothing_from_the_package(self) -> None:
        assert GRAPH["selfdamage._checks"] == set()

    def test_only_the_adapter_touches_the_dependency_graph(self) -> None:
        for name, path in MODULES.items():
            if name == "selfdamage.damage._torch_pruning_graph":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute):
                    code = ast.unparse(node)
                elif isinstance(node, ast.ImportFrom):
                    code = f"{node.module} " + " ".join(alias.name for alias in node.names)
                else:
                    continue
                for needle in ("tp.dependency", "DependencyGraph", "torch_pruning.dependency"):
                    assert needle not in code, f"{name} uses {needle}"

    @pytest.mark.parametrize("name", sorted(MODULES))
    def test_module_size(self, name: str) -> None:
        lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
        assert lines <= 420, f"{name} has {lines} lines; split it by concern"


def _code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef, source: list[str]) -> int:
    """Non-blank, non-comment lines of ``function``, its docstring left out."""
    body = function.body
    docstring: set[int] = set()
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        docstring = set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    last = function.end_lineno or function.lineno
    return sum(
        1
        for number in range(function.lineno, last + 1)
        if number not in docstring
        and source[number - 1].strip()
        and not source[number - 1].strip().startswith("#")
    )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_function_over_60_lines_of_code(name: str) -> None:
    text = MODULES[name].read_text(encoding="utf-8")
    source = text.splitlines()
    long = [
        f"{node.name} (line {node.lineno}): {lines}"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (lines := _code_lines(node, source)) > 60
    ]
    assert not long, f"{name}: functions over 60 lines of code: {long}; split them by what they do"


def test_the_architecture_page_names_every_module() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    module_map = text.split("Module map\n", 1)[1].split("\nOne training step\n", 1)[0]
    named = set(re.findall(r"``([A-Za-z_][\w.]*)``", module_map))
    relative = {name.removeprefix("selfdamage.") for name in MODULES if name != "selfdamage"}
    missing = sorted(relative - named)
    assert not missing, (
        f"docs/architecture.rst's module map does not name {missing}: add each, as "
        "``package.module`` (without 'selfdamage.'), to the row of what it owns"
    )
    stale = sorted(
        name
        for name in named
        if "." in name
        and name.split(".")[0]
        in {"damage", "adapters", "data", "evaluation", "longtail", "study", "_compat"}
        and name not in relative
        and not name.endswith(".*")
    )
    assert not stale, f"docs/architecture.rst's module map names modules that do not exist: {stale}"
