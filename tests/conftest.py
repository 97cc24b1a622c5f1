"""Shared helpers for ddcore's own tests.

Fixtures:
    cli: ``cli("run", "--ipc", 1, ...)`` calls ``ddcore_cli.app.main(argv)`` in-process and returns
        ``(exit_code, stdout, stderr)``; ``SystemExit`` is caught, a normal return is exit code 0.
    fake_entry_points: replaces the ``ddcore`` entry-point group seen by :mod:`ddcore.plugins` with
        real :class:`importlib.metadata.EntryPoint` objects attached to fake distributions:
        ``fake_entry_points.add("name", "module:attr", dist="dd-x", version="1.2")``.
    plugin_module: writes an importable module (unique name, on ``sys.path``) and returns its name.
    tiny_run_args: the flags that make ``dd run`` cheap (eval off, cache and out under tmp_path).

Helpers that test modules import live in ``core_support.py`` (not here: every test folder of the
repository has a ``conftest.py``, so ``from conftest import ...`` would pick whichever was loaded last).
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, Callable

import pytest

from core_support import CliResult



# ----------------------------------------------------------------------------------------------
# The dd command, in process
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def cli(capsys) -> Callable[..., CliResult]:
    from ddcore_cli.app import main

    def invoke(*argv: Any) -> CliResult:
        capsys.readouterr()  # drop anything printed before this call
        try:
            main([str(arg) for arg in argv])
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:  # sys.exit("message") prints the message and exits 1
                code = 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def tiny_run_args(tmp_path: Path) -> Callable[..., list[str]]:
    """``dd run`` flags for a cheap run: ipc 1, evaluation off, out and cache under tmp_path."""

    def make(*extra: Any, out: Path | None = None) -> list[str]:
        out = tmp_path / "run" if out is None else out
        return [
            "run", "--ipc", "1", "--eval-runs", "0", "--workers", "0",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), *map(str, extra),
        ]  # fmt: skip

    return make


# ----------------------------------------------------------------------------------------------
# Fake installed plugins
# ----------------------------------------------------------------------------------------------


class FakeDistribution:
    """Just what ddcore reads from an entry point's ``dist``: ``metadata["Name"]`` and ``version``."""

    def __init__(self, name: str, version: str):
        self.name = name
        self.version = version
        self.metadata = {"Name": name, "Version": version}

    def __repr__(self) -> str:
        return f"<FakeDistribution {self.name} {self.version}>"


def make_entry_point(name: str, value: str, dist: str | None = "dd-fake", version: str = "1.0") -> EntryPoint:
    """A real ``EntryPoint`` of group ``ddcore``, attached to a fake distribution (``None``: no dist)."""
    ep = EntryPoint(name=name, value=value, group="ddcore")
    if dist is not None:
        ep = ep._for(FakeDistribution(dist, version))
    return ep


class FakeEntryPoints:
    def __init__(self) -> None:
        self.installed: list[EntryPoint] = []

    def add(self, name: str, value: str, dist: str | None = "dd-fake", version: str = "1.0") -> EntryPoint:
        ep = make_entry_point(name, value, dist, version)
        self.installed.append(ep)
        return ep

    def __call__(self, **params: Any) -> list[EntryPoint]:
        group = params.get("group")
        return [ep for ep in self.installed if group is None or ep.group == group]


@pytest.fixture
def fake_entry_points(monkeypatch) -> FakeEntryPoints:
    """Only the entry points added to the returned object are 'installed' (none to start with)."""
    import ddcore.plugins

    fake = FakeEntryPoints()
    monkeypatch.setattr(ddcore.plugins, "entry_points", fake)
    return fake


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch) -> Callable[[str], str]:
    """``plugin_module(source)`` -> the name of a fresh importable module holding ``source``."""
    folder = tmp_path / "plugin_modules"
    folder.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(folder))
    created: list[str] = []

    def write(source: str, stem: str = "ddtest_plugin") -> str:
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        created.append(name)
        return name

    yield write
    for name in created:
        sys.modules.pop(name, None)
