"""The public API is the frozen list in ``docs/api.rst``: the package, its docs and the list agree.

A public module is one whose dotted path has no part starting with ``_``. Its public names
are its ``__all__``. ``docs/api.rst`` holds the frozen list (one ``module: name, name``
line per public module, in a ``code-block:: text`` under "The 1.0 public API") and the
directives that document it. These tests check, with messages that say what to do:

- every public module defines ``__all__``, and the public modules are the list's modules;
- every ``__all__`` is its line of the list, exactly (same names, same order);
- every exported name resolves, and a name that several public modules export (a package
  and the submodule that defines it, ``selfdamage.masks`` and ``selfdamage.damage.masks``)
  is one object;
- the directives of ``docs/api.rst`` document every listed name, each module's directive
  exactly its listed names, and no private module.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import selfdamage

ROOT = Path(__file__).resolve().parent.parent
API_PAGE = ROOT / "docs" / "api.rst"
LIST_HEADING = "The 1.0 public API"


def is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def public_modules() -> dict[str, ModuleType]:
    """Every public module of the package, imported (walk_packages imports the packages)."""
    names = ["selfdamage"] + [
        info.name
        for info in pkgutil.walk_packages(selfdamage.__path__, prefix="selfdamage.")
        if is_public(info.name)
    ]
    return {name: importlib.import_module(name) for name in sorted(names)}


def frozen_list(text: str) -> dict[str, list[str]]:
    """``{module: [names]}`` from the literal block under the list's heading."""
    after_heading = text.split(f"\n{LIST_HEADING}\n", 1)[1]
    block = after_heading.split(".. code-block:: text\n", 1)[1]
    frozen: dict[str, list[str]] = {}
    for line in block.splitlines()[1:]:
        if line and not line.startswith(" "):
            break  # the block ends at the first line that is not indented
        if not line.strip():
            continue
        module, _, names = line.strip().partition(":")
        assert module not in frozen, f"docs/api.rst's frozen list has {module} twice"
        frozen[module] = [name.strip() for name in names.split(",") if name.strip()]
    return frozen


_DIRECTIVE = re.compile(r"^\.\. (automodule|autodata|py:data):: (\S+)\n((?:   .*\n|\n)*)", re.M)


def _option(body: str, option: str) -> str | None:
    """The value of ``:option:`` in a directive's body, continuation lines joined."""
    match = re.search(rf"^   :{option}:(.*(?:\n      .*)*)", body, re.M)
    return None if match is None else " ".join(match.group(1).split())


def directives(text: str) -> tuple[dict[str, set[str] | None], dict[str, set[str]]]:
    """The page's automodule directives and the names each documents.

    Returns ``(automodules, documented)``: ``automodules`` maps each module with an
    ``automodule`` directive to its ``:members:`` (None for ``:no-members:``), and
    ``documented`` maps a module to every name a directive documents in it (``:members:``,
    ``autodata``, ``py:data`` with ``:module:``).
    """
    automodules: dict[str, set[str] | None] = {}
    documented: dict[str, set[str]] = {}
    for kind, target, body in _DIRECTIVE.findall(text):
        if kind == "automodule":
            members = _option(body, "members")
            if _option(body, "no-members") is not None or members is None:
                assert members is None, f"automodule {target}: both :members: and :no-members:"
                automodules[target] = None
                continue
            names = {name.strip() for name in members.split(",") if name.strip()}
            automodules[target] = names
            documented.setdefault(target, set()).update(names)
        elif kind == "autodata":
            module, _, name = target.rpartition(".")
            documented.setdefault(module, set()).add(name)
        else:
            module = _option(body, "module")
            assert module, f"py:data {target} in docs/api.rst needs a :module: option"
            documented.setdefault(module, set()).add(target)
    return automodules, documented


MODULES = public_modules()
PAGE = API_PAGE.read_text(encoding="utf-8")
FROZEN = frozen_list(PAGE)
AUTOMODULES, DOCUMENTED = directives(PAGE)
PACKAGES = {name for name, module in MODULES.items() if hasattr(module, "__path__")}


def test_the_page_has_a_frozen_list() -> None:
    # An independent floor: the list names the wrapper, the strategies and the adapters.
    assert FROZEN["selfdamage"] == [
        "ChannelDamage",
        "Damage",
        "SelfDamagingWrapper",
        "WeightDamage",
        "__version__",
    ]
    assert "SimCLRAdapter" in FROZEN["selfdamage.adapters"]
    assert FROZEN["selfdamage.cli"] == ["main"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_public_module_defines_all(name: str) -> None:
    assert hasattr(MODULES[name], "__all__"), (
        f"{name} is a public module without __all__: define __all__ (the names of "
        "docs/api.rst's frozen list for it), or make it private (a name starting with '_')"
    )


def test_public_modules_are_the_frozen_modules() -> None:
    unlisted = sorted(set(MODULES) - set(FROZEN))
    assert not unlisted, (
        f"public modules missing from docs/api.rst's frozen list: {unlisted}; add a line "
        "'module: name, ...' for each, or make the module private (a name starting with '_')"
    )
    gone = sorted(set(FROZEN) - set(MODULES))
    assert not gone, (
        f"docs/api.rst's frozen list has modules that are not public modules of the "
        f"package: {gone}; remove their lines, or restore the modules"
    )


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_all_is_the_frozen_line(name: str) -> None:
    if name not in MODULES:
        pytest.skip(f"{name} is not a public module (test_public_modules_are_the_frozen_modules)")
    exported = list(getattr(MODULES[name], "__all__", []))
    listed = FROZEN[name]
    extra = [n for n in exported if n not in listed]
    assert not extra, "; ".join(
        f"{name} exports {n!r} which is not in docs/api.rst's frozen list: add it there or "
        "make it private" + (" (drop it from __all__)" if not n.startswith("_") else "")
        for n in extra
    )
    missing = [n for n in listed if n not in exported]
    assert not missing, (
        f"docs/api.rst's frozen list has {missing} for {name}, but {name}.__all__ does not: "
        "export them, or remove them from the list"
    )
    assert exported == listed, (
        f"{name}.__all__ has the frozen names in another order: {exported}; write "
        "them in the list's order (ruff's sort of __all__)"
    )


def _defined_in(package: ModuleType) -> set[str]:
    """Names a package's ``__init__`` assigns itself (not imported ones)."""
    tree = ast.parse(Path(package.__file__ or "").read_text(encoding="utf-8"))
    return {
        target.id
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }


@pytest.mark.parametrize("name", sorted(MODULES))
def test_exported_names_resolve(name: str) -> None:
    module = MODULES[name]
    for exported in getattr(module, "__all__", []):
        assert hasattr(module, exported), f"{name}.__all__ names {exported!r}, which it lacks"
    if name not in PACKAGES:
        return
    own = _defined_in(module)
    for exported in module.__all__:
        homes = [
            sub
            for sub, names in FROZEN.items()
            if sub.startswith(f"{name}.") and sub not in PACKAGES and exported in names
        ]
        assert homes or exported in own, (
            f"{name} re-exports {exported!r}, which no public submodule of it exports: "
            "export it from the module that defines it too, or define it in the package"
        )


def test_a_name_exported_twice_is_one_object() -> None:
    seen: dict[str, tuple[str, object]] = {}
    for name in sorted(MODULES):
        for exported in getattr(MODULES[name], "__all__", []):
            value = getattr(MODULES[name], exported, None)
            if exported in seen:
                first, other = seen[exported]
                assert value is other, (
                    f"{name}.{exported} and {first}.{exported} are different objects: "
                    "a re-export must be the object of the module that defines it"
                )
            else:
                seen[exported] = (name, value)


def _documented_at(module: str, name: str) -> str | None:
    """The module whose directive documents ``module.name`` (itself, or the same object)."""
    if name in DOCUMENTED.get(module, set()):
        return module
    value = getattr(MODULES[module], name)
    for other, names in DOCUMENTED.items():
        if name in names and other in MODULES and getattr(MODULES[other], name, None) is value:
            return other
    return None


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_every_frozen_name_is_documented(name: str) -> None:
    if name not in MODULES:
        pytest.skip(f"{name} is not a public module (test_public_modules_are_the_frozen_modules)")
    undocumented = [n for n in FROZEN[name] if _documented_at(name, n) is None]
    assert not undocumented, (
        f"{name}: {undocumented} in docs/api.rst's frozen list but documented by no "
        f"directive below it: add them to the ':members:' of '.. automodule:: {name}' (or "
        "of the module that defines them)"
    )


@pytest.mark.parametrize("name", sorted(set(AUTOMODULES) | set(DOCUMENTED)))
def test_each_directive_documents_exactly_the_frozen_names(name: str) -> None:
    assert is_public(name) and name in FROZEN, (
        f"docs/api.rst documents {name}, which is not in its frozen list: remove the "
        "directive (private modules are not documented), or add the module to the list"
    )
    if name in PACKAGES or not FROZEN[name]:
        own = _defined_in(MODULES[name]) if name in PACKAGES else set()
        stray = DOCUMENTED.get(name, set()) - own
        assert AUTOMODULES.get(name) is None and not stray, (
            f"'.. automodule:: {name}' must say ':no-members:': its names are documented "
            f"in the submodules that define them (documented here: {sorted(stray)})"
        )
        return
    documented = DOCUMENTED.get(name, set())
    assert documented == set(FROZEN[name]), (
        f"the directives for {name} document {sorted(documented)}, its frozen line is "
        f"{FROZEN[name]}: make ':members:' (and any 'py:data') list exactly the line"
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("selfdamage.damage.scope", "selfdamage.damage._scope"),
        ("selfdamage.damage.slices", "selfdamage.damage._slices"),
        ("selfdamage.damage.compact_copy", "selfdamage.damage._compact_copy"),
    ],
)
def test_a_0_2_module_made_private_imports_with_a_warning(old: str, new: str) -> None:
    sys.modules.pop(old, None)  # a 0.2 pickle loaded by another test may have imported it
    namespace: dict[str, object] = {}
    with pytest.warns(DeprecationWarning, match=rf"{re.escape(old)} is private") as caught:
        exec(compile(f"import {old} as module", "users_script.py", "exec"), namespace)
    assert namespace["module"] is importlib.import_module(new)
    assert (caught[0].filename, caught[0].lineno) == ("users_script.py", 1)  # the import's line
    assert not is_public(new) and old not in FROZEN
