"""Writing the study's files whole or not at all.

Every file of a study folder (``settings.json``, ``runs/*.json``, ``checkpoints/*.pt``,
``results.json``, ``groups.png``) is written by :func:`write_atomically`: into a temporary
file beside it, flushed to disk, then renamed over it. A study stopped at any moment leaves
the previous version of a file or the new one, never part of one, so ``--resume`` finds
the last complete checkpoint. A process killed while writing can leave its temporary file
(``<name>.<pid>.tmp``); :func:`remove_partial_writes` clears them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__: list[str] = []  # the study's internals: no public name

_PARTIAL = re.compile(r".+\.[0-9]+\.tmp")  # what write_atomically writes before the rename


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Writes ``path`` whole or not at all: ``write(file)`` fills a file that replaces it.

    The file is a temporary one in ``path``'s folder (so the rename stays on one file
    system), flushed and synced to disk before :func:`os.replace` renames it over ``path``
    in one step. If ``write`` raises, the temporary file is removed and ``path`` is as it
    was.

    Args:
        path: The file to write.
        write: Writes the content to the binary file it is given, e.g.
            ``lambda file: torch.save(state, file)``.

    Examples:
        >>> path = Path(getfixture("tmp_path")) / "a.txt"
        >>> write_atomically(path, lambda file: file.write(b"new"))
        >>> path.read_bytes(), [p.name for p in path.parent.iterdir()]
        (b'new', ['a.txt'])
    """
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json(path: Path, content: Any) -> None:
    """Writes ``content`` as indented JSON to ``path`` with :func:`write_atomically`."""
    text = json.dumps(content, indent=2)
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def remove_partial_writes(folder: Path) -> None:
    """Removes the temporary files that writes stopped midway left in ``folder``.

    Examples:
        >>> folder = Path(getfixture("tmp_path"))
        >>> for name in ("a.pt.123.tmp", "b.tmp", "c.pt"):
        ...     _ = (folder / name).write_text("")
        >>> remove_partial_writes(folder)
        >>> sorted(p.name for p in folder.iterdir())
        ['b.tmp', 'c.pt']
    """
    for path in folder.glob("*.tmp"):
        if _PARTIAL.fullmatch(path.name):
            path.unlink(missing_ok=True)
