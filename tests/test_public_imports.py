"""Plugins and examples use only ddcore's public names, and the core never imports a plugin.

Scans every ``.py`` file under ``plugins/`` and ``examples/`` (not ``build/`` or ``*.egg-info``) with
``ast``. Refused everywhere: importing an underscore name from ``ddcore``/``ddcore_cli`` (``from
ddcore.data.imagefolder import _names``), an underscore module (``ddcore._x``), or reading an underscore
attribute of an imported ddcore module (``imagefolder._names``). Refused in plugin code (tests may drive
``dd`` and the pipeline as a user would): ``ddcore_cli`` imports and the core's internal names (the run
``Pipeline``: use :func:`ddcore.build_run_context`). And no module of the core (``ddcore/``, ``cli/``)
imports a bundled plugin's or an example's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_PACKAGES = ("ddcore", "ddcore_cli")
#: ``(module, name)`` pairs that are the core's machinery, not API, with the public replacement.
INTERNAL = {("ddcore.runner", "Pipeline"): "ddcore.build_run_context"}
PLUGIN_PACKAGES = ("ddcore_edf", "ddcore_diffsel", "ddcore_compdd", "dd_herding", "dd_dm")


def python_files(*folders: str) -> list[Path]:
    found = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "build" in parts or any(part.endswith(".egg-info") for part in parts):
                continue
            found.append(path)
    return found


def is_core(module: str) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in CORE_PACKAGES)


def is_test(path: Path) -> bool:
    return "tests" in path.relative_to(ROOT).parts


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def problems_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(ROOT)
    found: list[str] = []
    core_names: set[str] = set()  # local names bound to something imported from the core
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if is_core(alias.name):
                    core_names.add(alias.asname or alias.name.split(".")[0])
                    if any(private(part) for part in alias.name.split(".")):
                        found.append(f"{where}:{node.lineno}: import {alias.name} (a private module)")
                    if alias.name.split(".")[0] == "ddcore_cli" and not is_test(path):
                        found.append(f"{where}:{node.lineno}: import {alias.name} (the dd command is not an API)")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and is_core(node.module):
            if any(private(part) for part in node.module.split(".")):
                found.append(f"{where}:{node.lineno}: from {node.module} import ... (a private module)")
            if node.module.split(".")[0] == "ddcore_cli" and not is_test(path):
                found.append(f"{where}:{node.lineno}: from {node.module} import ... (the dd command is not an API)")
            for alias in node.names:
                core_names.add(alias.asname or alias.name)
                if private(alias.name):
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name} (a private name)")
                replacement = INTERNAL.get((node.module, alias.name))
                if replacement and not is_test(path):
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name} (use {replacement})")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in core_names:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)} (a private name of the core)")
    return found


def test_the_scan_sees_the_plugins():
    files = python_files("plugins", "examples")
    assert any(path.name == "plugin.py" and "compdd" in path.parts for path in files)
    assert any("dd_herding" in path.parts for path in files)


def test_the_scan_catches_private_imports(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    bad = tmp_path / "plugins" / "x" / "mod.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "from ddcore.data.imagefolder import _names\nfrom ddcore_cli.output import stdout\n"
        "from ddcore.runner import Pipeline\nfrom ddcore import teacher\nteacher._read_teacher(1)\n"
        "import ddcore_edf._x\nfrom ddcore_edf import _ok  # a plugin's own private names are its business\n",
        encoding="utf-8",
    )
    found = problems_in(bad)
    assert len(found) == 4 and all("plugins/x/mod.py" in line for line in found), found


@pytest.mark.parametrize("folder", ["plugins", "examples"])
def test_plugins_and_examples_use_public_names_only(folder):
    found = [line for path in python_files(folder) for line in problems_in(path)]
    assert not found, "private or internal imports of the core:\n" + "\n".join(found)


def test_the_core_imports_no_plugin():
    found = []
    for path in python_files("ddcore", "cli"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])  # fmt: skip
            for module in modules:
                if module.split(".")[0] in PLUGIN_PACKAGES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module}")
    assert not found, "the core imports a plugin:\n" + "\n".join(found)


# ----------------------------------------------------------------------------------------------
# The public helpers that replaced the private imports
# ----------------------------------------------------------------------------------------------


def test_shard_repeats_deals_jobs_round_robin_and_gathers_in_order(monkeypatch):
    from types import SimpleNamespace

    import accelerate.utils

    from ddcore.evaluation import shard_repeats, summarise

    ran: list[int] = []
    one = SimpleNamespace(process_index=0, num_processes=1, reporter=None)
    assert shard_repeats(one, 3, lambda r: ran.append(r) or r * 10) == [0, 10, 20] and ran == [0, 1, 2]
    assert shard_repeats(one, ["a", "b"], str.upper) == ["A", "B"]

    # process 1 of 2 runs jobs 1, 3; the gather brings process 0's jobs 0, 2, 4
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda mine: [(4, 40.0), (0, 0.0), (2, 20.0), *mine])
    second = SimpleNamespace(process_index=1, num_processes=2, reporter=None)
    ran.clear()
    assert shard_repeats(second, 5, lambda r: ran.append(r) or r * 10.0) == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert ran == [1, 3]
    assert summarise([1.0, 3.0], prefix="x") == {"x_mean": 2.0, "x_std": 1.0, "x_runs": [1.0, 3.0]}


def test_build_run_context_and_public_image_files(tmp_path):
    from ddcore import build_run_context
    from ddcore.data.imagefolder import image_files, short_list

    ctx = build_run_context({"dataset": "digits", "ipc": 1, "workers": 0, "cache_dir": str(tmp_path / "cache")})
    assert ctx.dataset.name == "digits" and ctx.model_spec.width == 32 and ctx.out_dir is None
    (tmp_path / "c").mkdir()
    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt"):
        (tmp_path / "c" / name).write_bytes(b"")
    assert [Path(p).name for p in image_files(tmp_path / "c")] == ["a.JPG", "b.png"]
    assert short_list(list("abcdefg")) == "a, b, c, d, e, ... (2 more)"
