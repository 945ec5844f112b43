"""Sphinx configuration for the selfdamage documentation."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("MPLBACKEND", "Agg")

import selfdamage

project = "selfdamage"
author = "selfdamage developers"
copyright = "2026, selfdamage developers"
release = selfdamage.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"selfdamage {release}"
html_static_path = ["_static"]
suppress_warnings = ["myst.header"]

# -- Cross-references ---------------------------------------------------------------------
# Nitpicky builds (``sphinx-build -n``, as CI runs them) warn about every reference that
# links nowhere. Types of other packages cannot link here (no intersphinx: the docs build
# offline); these patterns name those packages and the short spellings of their types in
# annotations (``nn.Module``, ``Tensor``), never a selfdamage name.
_EXTERNAL = (
    "torch", "torchvision", "torch_pruning", "tp", "nn", "numpy", "np", "PIL", "Image",
    "lightly", "pytorch_lightning", "lightning", "collections", "typing", "typing_extensions",
    "abc", "argparse", "os", "pathlib", "random",
)  # fmt: skip
nitpick_ignore_regex = [
    ("py:.*", rf"({'|'.join(_EXTERNAL)})\..+"),
    ("py:class", r"Tensor|Module|_NormBase|Dataset|Path|Generator"),
]


def _find(target: str) -> Any:
    """The object a dotted name reaches by importing and attribute access, or None."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part, None)
        return obj
    return None


def _documented_name(target: str, documented: Iterable[str]) -> str | None:
    """The name under which the API page documents the selfdamage object ``target`` names.

    The page documents each object once, in the module that defines it
    (``selfdamage.damage.weight.WeightDamage``); a reference may use a re-exported name
    (``selfdamage.damage.WeightDamage``, ``selfdamage.SelfDamagingWrapper.refresh_mask``).
    A class, function or method names its home (``__module__`` + ``__qualname__``); a
    property or a constant is the documented name with the same last part and object.
    """
    obj = _find(target)
    if obj is None:
        return None
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(qualname, str) and getattr(obj, "__module__", None):
        return f"{obj.__module__}.{qualname}"
    last = "." + target.rpartition(".")[2]
    return next((name for name in documented if name.endswith(last) and _find(name) is obj), None)


def _resolve_reexport(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """``missing-reference`` handler: retry a selfdamage reference under its documented name.

    A short name in a docstring (``:class:`Damage``` in ``selfdamage.damage``) is tried in
    the docstring's module and class too.
    """
    if node.get("refdomain") != "py":
        return None
    target, module, cls = node["reftarget"], node.get("py:module"), node.get("py:class")
    candidates = [target]
    if module:
        candidates += [f"{module}.{target}"] + ([f"{module}.{cls}.{target}"] if cls else [])
    domain = env.get_domain("py")
    for candidate in filter(lambda name: name.startswith("selfdamage."), candidates):
        name = _documented_name(candidate, domain.objects)
        if name is not None and name != target:
            found = domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
            )
            if found is not None:
                return found
    return _as_text(candidates[0], node, contnode)


def _as_text(target: str, node: Any, contnode: Any) -> Any:
    """A type variable or an internal class, in a signature or a list of bases, as text.

    Such a type has no entry to link to (only public names are documented); the docstring
    says what it holds. Anything else stays a missing reference.
    """
    obj = _find(target) if target.startswith("selfdamage.") else None
    if node["reftype"] == "class" and isinstance(obj, (type, TypeVar)):
        return contnode
    return None


def setup(app: Any) -> None:
    app.connect("missing-reference", _resolve_reexport)
