"""The study's files are written whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

import pytest

from selfdamage.study._files import remove_partial_writes, write_atomically, write_json


class Stopped(Exception):
    """Stands for the process being stopped while it writes."""


class TestWriteAtomically:
    def test_replaces_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "a.json"
        path.write_text("old")
        write_json(path, {"b": [1, 2]})
        assert json.loads(path.read_text()) == {"b": [1, 2]}
        assert path.read_text() == '{\n  "b": [\n    1,\n    2\n  ]\n}'  # indent=2, as before
        assert [p.name for p in tmp_path.iterdir()] == ["a.json"]

    @pytest.mark.parametrize("before", [b"the previous version", None])
    def test_a_write_stopped_midway_leaves_the_previous_file(
        self, tmp_path: Path, before: bytes | None
    ) -> None:
        path = tmp_path / "run.pt"
        if before is not None:
            path.write_bytes(before)

        def stopped_midway(file: IO[bytes]) -> None:
            file.write(b"half of the new")
            raise Stopped

        with pytest.raises(Stopped):
            write_atomically(path, stopped_midway)
        assert (path.read_bytes() if path.exists() else None) == before
        assert [p.name for p in tmp_path.iterdir()] == ([] if before is None else ["run.pt"])

    def test_keeps_the_permissions_of_a_new_file(self, tmp_path: Path) -> None:
        # Not mkstemp's 0600: the file is as readable as one written with open().
        write_atomically(tmp_path / "a", lambda file: file.write(b"x"))
        (tmp_path / "b").write_bytes(b"x")
        assert (tmp_path / "a").stat().st_mode == (tmp_path / "b").stat().st_mode


def test_remove_partial_writes(tmp_path: Path) -> None:
    names = ["results.json.4242.tmp", "run.pt.7.tmp", "notes.tmp", "run.pt", "x.1.tmp.bak"]
    for name in names:
        (tmp_path / name).write_text("")
    remove_partial_writes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "run.pt", "x.1.tmp.bak"]
