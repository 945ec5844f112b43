"""Module names of the past: removed ones raise their error, moved ones resolve for pickles.

:func:`install` (run once by ``import selfdamage``) puts one finder first on
``sys.meta_path``, so that no stale file of an older release (or another checkout on the
path) answers instead. It answers only the exact names below and leaves every other
import to the finders after it:

- a module removed in 1.0 (``selfdamage.channel_damage``, ``selfdamage.adapters._base``):
  the ``ImportError`` of :func:`~selfdamage._compat.removed.removed_name_error`, naming
  what to import instead;
- a module whose name objects pickled by 0.2 refer to (``selfdamage._mask_load``): a
  module holding those objects' classes and functions from
  :mod:`selfdamage._compat.wrapper_state`, so that ``torch.load`` of such a pickle works;
- a module of 0.2 that 1.0 made private (``selfdamage.damage.scope``, ``.slices``,
  ``.compact_copy``): the private module itself, with a ``DeprecationWarning`` at the line
  that imports it (0.2's pickles of a channel-damaged wrapper name ``.slices``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

from selfdamage._compat.removed import removed_name_error

__all__ = ["PastModuleFinder", "install"]

MOVED = {"selfdamage._mask_load": "selfdamage._compat.wrapper_state"}
"""Module names that 0.2's pickles refer to, and the module holding their objects now."""

RENAMED = {
    "selfdamage.damage.compact_copy": "selfdamage.damage._compact_copy",
    "selfdamage.damage.scope": "selfdamage.damage._scope",
    "selfdamage.damage.slices": "selfdamage.damage._slices",
}
"""Public module names of 0.2 that are private in 1.0, and their private names."""


class _Alias(importlib.abc.Loader):
    """Loads a module name of the past as a module with the public names of ``target``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module

    def exec_module(self, module: ModuleType) -> None:
        target = importlib.import_module(self.target)
        for name in target.__all__:
            setattr(module, name, getattr(target, name))


class _Renamed(importlib.abc.Loader):
    """Loads a module name of 0.2 as the private module of 1.0 that it became, warning."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module, replaced by the target in exec_module

    def exec_module(self, module: ModuleType) -> None:
        warnings.warn(
            f"{module.__name__} is private since selfdamage 1.0 (now {self.target}) and "
            "will be removed; import the public names from selfdamage.damage instead (a "
            "pickle written by 0.2 names it: save it again to silence this warning)",
            DeprecationWarning,
            stacklevel=2,  # the import system's frames are skipped: the importing line
        )
        sys.modules[module.__name__] = importlib.import_module(self.target)


class PastModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the module names of the past (and no other name); see the module docstring.

    Examples:
        >>> import importlib
        >>> importlib.import_module("selfdamage.channel_damage")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ImportError: selfdamage.channel_damage was removed in selfdamage 1.0; use ...
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))
        if fullname in RENAMED:
            return importlib.util.spec_from_loader(fullname, _Renamed(RENAMED[fullname]))
        error = removed_name_error(fullname)
        if error is not None:
            raise error
        return None


def install() -> None:
    """Puts a :class:`PastModuleFinder` first on ``sys.meta_path``, once."""
    if not any(isinstance(finder, PastModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, PastModuleFinder())
