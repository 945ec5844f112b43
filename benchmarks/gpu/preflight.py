"""Preflight of the GPU evidence kit: can this interpreter run the study? Answers in seconds.

Imports everything the run needs, with the standard library only until then, so that a
missing package gives one line naming every missing package instead of a traceback after
minutes: torch (with CUDA unless ``--tiny``), torchvision, numpy, tqdm, and from the kit
(``--site``, where run.sh installed its wheels) lightly, torch-pruning and selfdamage.
matplotlib is optional: without it the chart is skipped. Writes the versions as JSON to
``--json`` (run.sh hands them to evidence.py, which puts them in ``results.json``) and
prints them. Exit status 2 if anything is missing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

# (module, distribution) that every run needs; lightly's own imports come with it.
NEEDED = (
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("numpy", "numpy"),
    ("tqdm", "tqdm"),
    ("lightly", "lightly"),
    ("torch_pruning", "torch-pruning"),
    ("selfdamage", "selfdamage"),
)
FROM_KIT = ("lightly", "torch_pruning", "selfdamage")
OPTIONAL = (("matplotlib", "matplotlib", "the chart (groups.png) is skipped"),)
# What the run imports beyond the top-level packages: their imports are checked too.
RUN_IMPORTS = ("selfdamage.study", "selfdamage.adapters", "lightly.loss", "torchvision.models")


def check(*, site: Path, tiny: bool) -> tuple[dict[str, Any], list[str]]:
    """The versions of every package, and the list of problems (empty: all there)."""
    found: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable}
    missing: list[str] = []
    for module, dist in NEEDED:
        try:
            imported = importlib.import_module(module)
        except ImportError as error:
            missing.append(_missing(error, module, dist))
            continue
        found[dist] = _version(imported, dist)
        if module in FROM_KIT and not _inside(imported, site):
            missing.append(f"{dist} from the kit (imported from {imported.__file__} instead)")
    for module, dist, without in OPTIONAL:
        try:
            found[dist] = _version(importlib.import_module(module), dist)
        except ImportError:
            found[dist] = None
            print(f"preflight: {dist} is not installed: {without}", flush=True)
    if not missing:
        for module in RUN_IMPORTS:
            try:
                importlib.import_module(module)
            except ImportError as error:
                missing.append(_missing(error, module, module))
    if "torch" in found:
        import torch

        cuda = torch.cuda.is_available()
        found["cuda"] = torch.version.cuda
        found["cudnn"] = torch.backends.cudnn.version() if cuda else None
        found["gpu"] = torch.cuda.get_device_name(0) if cuda else None
        found["bf16"] = torch.cuda.is_bf16_supported() if cuda else None
        if not tiny and not cuda:
            missing.append(
                f"a CUDA GPU (no CUDA GPU visible to torch {torch.__version__}, CUDA build "
                f"{torch.version.cuda}; use --tiny for a CPU smoke run)"
            )
    return found, missing


def _missing(error: ImportError, module: str, dist: str) -> str:
    """The missing package's name; the one that needs it if that is not the same."""
    if error.name and error.name.split(".")[0] != module.split(".")[0]:
        return f"{error.name} (imported by {dist})"
    return dist


def _version(module: Any, dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return getattr(module, "__version__", None)


def _inside(module: Any, folder: Path) -> bool:
    return Path(module.__file__).resolve().is_relative_to(folder.resolve())


def main() -> int:
    """Runs the check; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, required=True, help="where the kit's wheels are")
    parser.add_argument("--json", type=Path, required=True, help="file for the versions")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: no GPU needed")
    args = parser.parse_args()
    found, missing = check(site=args.site, tiny=args.tiny)
    if missing:
        print(
            f"preflight: error: missing on {sys.executable}: {'; '.join(missing)}", file=sys.stderr
        )
        return 2
    args.json.write_text(json.dumps(found, indent=2))
    print("preflight: " + ", ".join(f"{k} {v}" for k, v in found.items() if k != "executable"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
