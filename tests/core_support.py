"""Helpers that ddcore's own test modules import (``from core_support import assert_cli_error``).

They are not in ``conftest.py``: the plugins' test folders have a ``conftest.py`` of their own, and
``from conftest import ...`` would get whichever of them pytest loaded last.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

CliResult = tuple[int, str, str]


def assert_cli_error(result: CliResult, *fragments: str, code: int = 2) -> str:
    """The command failed with ``code`` and printed exactly one ``Error...`` line naming every fragment."""
    exit_code, out, err = result
    assert exit_code == code, f"exit code {exit_code} != {code}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("Error"), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def write_plugin_file(folder: Path, stem: str, source: str) -> Path:
    """A local plugin file ``folder/<stem>.py`` (for ``--plugin path/to/file.py``)."""
    path = folder / f"{stem}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), to prove nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
