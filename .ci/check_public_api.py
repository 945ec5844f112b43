"""Imports every public name of the installed selfdamage package (run outside the repo)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import selfdamage

if "site-packages" not in selfdamage.__file__:
    sys.exit(f"selfdamage imported from {selfdamage.__file__}, not from the installed wheel")

count = 0
for info in pkgutil.walk_packages(selfdamage.__path__, prefix="selfdamage."):
    if any(part.startswith("_") for part in info.name.split(".")):
        continue
    module = importlib.import_module(info.name)
    for name in getattr(module, "__all__", []):
        getattr(module, name)
        count += 1
for name in selfdamage.__all__:
    getattr(selfdamage, name)
print(f"selfdamage {selfdamage.__version__}: imported {count} public names from the wheel")
