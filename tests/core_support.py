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


# ----------------------------------------------------------------------------------------------
# Known-answer datasets (``ddcore.testing.known_answer_dataset``) as a local plugin file
# ----------------------------------------------------------------------------------------------

#: A local plugin file (``dd run --plugin PATH``) registering the ``ka/*`` datasets, for command-line tests.
KNOWN_ANSWER_PLUGIN_FILE = """
from ddcore import hookimpl
from ddcore.testing import register_known_answer_datasets


@hookimpl
def dd_register_datasets(register):
    register_known_answer_datasets(register)
"""


def write_known_answer_plugin(folder: Path) -> Path:
    """``folder/known_answers.py``: a local plugin file registering the ``ka/*`` datasets."""
    return write_plugin_file(folder, "known_answers", KNOWN_ANSWER_PLUGIN_FILE)


# ----------------------------------------------------------------------------------------------
# Two real processes (torchrun, gloo on the CPU) and a single-process reference in this one
# ----------------------------------------------------------------------------------------------

#: Variables of an enclosing distributed launch that must not leak into the one a test starts.
DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def reset_accelerate_state() -> None:
    """Forget any Accelerator state an earlier test left in this process (it is a singleton)."""
    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    except (ImportError, AttributeError):  # pragma: no cover - private API of accelerate
        pass


def launch_two_processes(args: list, cwd: Path, timeout: float = 240):
    """``torchrun --standalone --nproc_per_node 2 -m ddcore_cli ARGS`` on the CPU (gloo), one thread each.

    Returns the finished ``subprocess.CompletedProcess``; a timeout (a deadlocked collective, most
    likely) or a non-zero exit fails the calling test with the processes' output.
    """
    import os
    import subprocess
    import sys

    import pytest

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ddcore_cli", *map(str, args)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"two-process run did not finish in {timeout} s (deadlock?)\n{exc.stderr or ''}")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"
    return proc


class single_process:
    """``with single_process():`` a fresh Accelerator state and one torch thread, as in a launched process."""

    def __enter__(self) -> "single_process":
        import torch

        self.threads = torch.get_num_threads()
        reset_accelerate_state()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc) -> None:
        import torch

        torch.set_num_threads(self.threads)
        reset_accelerate_state()
