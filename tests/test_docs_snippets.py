"""The README's and CONTRIBUTING's code blocks work when followed (issue 14, kind 6).

Every fenced block of both files is extracted and checked, in document order, in a fresh folder per
document (``tmp_path``):

- ``python``: executed, in one namespace per document (a later block may use an earlier block's
  imports). A block whose first line is a comment naming a file (``# first_images.py: ...``,
  ``# tests/test_x.py``) is also written to that file, so later blocks can import or run it. Every
  ``ddcore.run(...)`` call gets the tiny evaluator (1 network, 2 epochs, width 8), ``workers = 0``, a
  cache and run folder in ``tmp_path``. ``MyPlugin``, the README's placeholder for the reader's
  plugin, is a plugin that implements nothing.
- ``toml``: parsed. A ``[project]`` table is a ``pyproject.toml``: it needs ``name``, ``version`` and
  an entry point in the ``ddcore`` group. Any other TOML is a run config, validated like
  ``dd run --config`` before any work (:class:`ddcore.runner.Pipeline` with ``write=False``: core
  keys, plugins, ``[plugin.NAME]`` and distiller tables).
- ``bash``: each command (lines split at ``&&``; ``[--flag]`` means the flag is given) that calls
  ``dd`` (``dd``, ``.venv/bin/dd``, ``python -m ddcore_cli``) is parsed by the real click command,
  so a renamed or removed option fails. ``dd plugins``, ``dd datasets`` and ``dd distillers`` are
  run for real. A ``dd run`` whose files exist is validated like a TOML run config (nothing is
  trained). Other commands (``python3 -m venv``, ``pip``, ``source``, ``pytest``) are set-up, checked
  by ``tests/test_readme.py`` and by :func:`test_contributing_walkthrough_from_a_clean_venv`.
- Other languages (``text``, ``mermaid``, none) are not checked.

A block can be marked by an HTML comment on the line before it:

- ``<!-- docs-test: skip REASON -->``: not checked;
- ``<!-- docs-test: raises NAME -->``: a python block that must raise the exception ``NAME``;
- ``<!-- docs-test: set KEY=VALUE ... -->``: extra config for that block's ``ddcore.run`` calls and
  ``dd run`` commands (``--set KEY=VALUE``).

The plugin packaged in CONTRIBUTING's section 2 (``first-images``) is "installed" for the whole
document: an entry point ``first-images`` pointing at the ``first_images.py`` block.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
import types
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from ddcore.testing import TINY_EVAL

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "CONTRIBUTING.md")
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<verb>skip|raises|set)\b(?P<rest>.*?)-->")
FILE_COMMENT = re.compile(r"#\s*(?P<path>[\w./-]+\.(?:py|toml))\b")
RUN_LISTINGS = {"plugins", "datasets", "distillers"}


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    body: str
    marker: tuple[str, str] | None

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def file_name(self) -> str | None:
        first = self.body.lstrip().splitlines()[0] if self.body.strip() else ""
        match = FILE_COMMENT.match(first)
        return match.group("path") if match else None


def blocks(doc: str) -> list[Block]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        marker = MARKER.fullmatch(before[-1].strip()) if before else None  # the whole line before the fence
        found.append(Block(
            doc, text[: match.start()].count("\n") + 1, match.group("lang"), textwrap.dedent(match.group("body")),
            (marker.group("verb"), marker.group("rest").strip()) if marker else None,
        ))  # fmt: skip
    return found


# ----------------------------------------------------------------------------------------------
# The folder a document is followed in
# ----------------------------------------------------------------------------------------------


class MyPlugin:
    """The README's placeholder for the reader's own plugin: implements nothing."""

    name = "my-plugin"


@pytest.fixture
def follow(tmp_path, monkeypatch, cli):
    """Run every block of one document in ``tmp_path``; returns a function ``follow(doc)``."""
    import ddcore
    import ddcore.plugins
    from ddcore.config import deep_merge

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    real_entry_points = ddcore.plugins.entry_points

    def entry_points(**params):
        found = list(real_entry_points(**params))
        if (tmp_path / "first_images.py").exists() and params.get("group") == "ddcore":
            found.append(EntryPoint("first-images", "first_images", "ddcore"))
        return found

    monkeypatch.setattr(ddcore.plugins, "entry_points", entry_points)
    real_run = ddcore.run
    runs = []

    def tiny_run(config=None, plugins=(), *args, extra=None, **kwargs):
        base = {"workers": 0, "eval": dict(TINY_EVAL), "cache_dir": str(tmp_path / "cache"), "out": str(tmp_path / f"run{len(runs)}")}
        merged = deep_merge(deep_merge(base, dict(config or {})), follow.overrides)
        merged["eval"] = deep_merge(merged.get("eval", {}), {k: v for k, v in TINY_EVAL.items() if k != "runs"})
        merged["eval"]["runs"] = min(int(merged["eval"].get("runs", 1)), 1)
        result = real_run(merged, plugins, *args, **kwargs)
        runs.append(result)
        return result

    monkeypatch.setattr(ddcore, "run", tiny_run)

    def follow(doc: str) -> list[str]:
        """Check every block of ``doc``; returns a line per block saying what was done with it."""
        module = types.ModuleType(f"docs_{doc.split('.')[0].lower()}")  # dataclasses look their module up
        monkeypatch.setitem(sys.modules, module.__name__, module)
        namespace = module.__dict__
        namespace["MyPlugin"] = MyPlugin
        done = []
        for block in blocks(doc):
            follow.overrides = {}
            verb, rest = block.marker or ("", "")
            if verb == "skip":
                done.append(f"{block.where} skipped: {rest}")
                continue
            if verb == "set":
                from ddcore.config import parse_assignment

                for assignment in rest.split():
                    follow.overrides = deep_merge(follow.overrides, parse_assignment(assignment))
            if block.file_name:
                target = tmp_path / block.file_name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.body, encoding="utf-8")
            if block.lang == "python":
                done.append(run_python(block, namespace, raises=rest if verb == "raises" else None))
            elif block.lang == "toml":
                done.append(check_toml(block, tmp_path))
            elif block.lang == "bash":
                done.append(check_bash(block, tmp_path, cli, follow.overrides))
        return done

    follow.overrides = {}
    follow.runs = runs
    return follow


def run_python(block: Block, namespace: dict, raises: str | None) -> str:
    if block.file_name and block.file_name.startswith("tests/"):
        return f"{block.where} written to {block.file_name} (run by the walk-through test)"
    code = compile(block.body, f"<{block.where}>", "exec")
    if raises:
        with pytest.raises(Exception) as error:
            exec(code, namespace)
        assert type(error.value).__name__ == raises, f"{block.where}: raised {error.value!r}, documented {raises}"
        return f"{block.where} raised {raises}"
    exec(code, namespace)
    return f"{block.where} executed"


def check_toml(block: Block, folder: Path) -> str:
    data = tomllib.loads(block.body)
    if "project" in data:
        project = data["project"]
        assert project.get("name") and project.get("version"), f"{block.where}: pip needs [project] name and version"
        assert data["project"].get("entry-points", {}).get("ddcore"), f"{block.where}: no [project.entry-points.ddcore]"
        return f"{block.where} pyproject checked"
    validate_run_config(data, folder)
    return f"{block.where} run config validated"


def validate_run_config(data: dict, folder: Path) -> None:
    """Everything ``dd run`` checks before any work, without training or writing anything."""
    from ddcore.config import deep_merge
    from ddcore.runner import Pipeline

    pipeline = Pipeline(deep_merge(data, {"cache_dir": str(folder / "cache"), "workers": 0}), write=False)
    assert not (folder / "runs").exists()
    del pipeline


def dd_commands(body: str) -> list[list[str]]:
    """The ``dd`` commands of a bash block, as argument lists after ``dd``."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            words = [w[1:-1] if w.startswith("[-") and w.endswith("]") else w for w in shlex.split(part, comments=True)]
            if not words:
                continue
            if words[0] in ("dd", ".venv/bin/dd"):
                commands.append(words[1:])
            elif words[:3] in (["python", "-m", "ddcore_cli"], [".venv/bin/python", "-m", "ddcore_cli"]):
                commands.append(words[3:])
    return commands


def check_bash(block: Block, folder: Path, cli, overrides: dict) -> str:
    import click

    from ddcore_cli.app import cli as root

    checked = []
    for argv in dd_commands(block.body):
        context = root.make_context("dd", list(argv), resilient_parsing=True)
        command, where = root, context
        args = list(argv)
        while isinstance(command, click.Group) and args:
            name = args.pop(0)
            sub = command.get_command(where, name)
            assert sub is not None, f"{block.where}: `dd {' '.join(argv)}`: no command {name!r}"
            where = sub.make_context(name, list(args), parent=where)  # parses: unknown options fail here
            with warnings.catch_warnings():  # click 8.2 deprecates protected_args (the subcommand's name and args)
                warnings.simplefilter("ignore", DeprecationWarning)
                command, args = sub, list(where.protected_args) + list(where.args)
        if argv and argv[0] in RUN_LISTINGS:
            code, out, err = cli(*argv)
            assert code == 0, f"{block.where}: `dd {' '.join(argv)}` exited {code}: {err}"
        elif argv and argv[0] == "run":
            validate_run_command(where, folder, overrides)
        checked.append("dd " + " ".join(argv))
    return f"{block.where} checked: {'; '.join(checked) or 'no dd command'}"


def validate_run_command(context, folder: Path, overrides: dict) -> None:
    from ddcore.config import deep_merge
    from ddcore_cli.run_cmd import merged_config

    params = dict(context.params)
    files = [params.get("config_file"), params.get("data_root"), params.get("resume")]
    files += [Path(p) for p in params.get("plugins", ()) if p.endswith(".py") or "/" in p]
    if any(path is not None and not Path(path).exists() for path in files) or params.get("resume"):
        return  # an illustration (my-run.toml, /data/imagenette, runs/...): parsed only
    keys = ("dataset", "data_root", "image_size", "workers", "ipc", "seed", "name", "out", "select", "initialize",
            "distill", "cache_dir", "eval_runs", "eval_epochs", "eval_model", "labels", "baseline", "overwrite", "cpu")  # fmt: skip
    flags = {key: params.get(key) for key in keys if key in params}
    data = merged_config(params.get("config_file"), tuple(params.get("plugins", ())), tuple(params.get("sets", ())), **flags)
    validate_run_config(deep_merge(data, overrides), folder)


# ----------------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------------


def test_readme_blocks_work(follow):
    done = follow("README.md")
    assert any("run config validated" in line for line in done)
    assert any(line.endswith("executed") for line in done)  # the "From Python" block ran
    assert len(follow.runs) == 1 and follow.runs[0].metrics["eval/acc_runs"]
    assert any("dd datasets" in line for line in done) and any("dd plugins --all --json" in line for line in done)


def test_contributing_blocks_work(follow):
    done = follow("CONTRIBUTING.md")
    assert (Path.cwd() / "first_images.py").exists() and (Path.cwd() / "run.toml").exists()
    result = follow.runs[0]
    assert result.distilled.meta["selected_by"] == "first-images"
    assert sum("run config validated" in line for line in done) == 1
    assert any("raised PluginError" in line for line in done)
    assert any("pyproject checked" in line for line in done)


def test_extraction_sees_every_block_and_marker(tmp_path):
    readme, contributing = blocks("README.md"), blocks("CONTRIBUTING.md")
    assert [b.lang for b in readme].count("toml") == 1 and [b.lang for b in readme].count("python") == 1
    indented = [b for b in contributing if "class FirstImagesConfig" in b.body and b.body.startswith("from dataclasses")]
    assert len(indented) == 1  # the block inside a list item is found and dedented
    assert [b.file_name for b in contributing if b.file_name] == ["first_images.py", "run.toml", "tests/test_first_images.py"]
    assert [b.marker for b in contributing if b.marker] == [("raises", "PluginError")]


def test_dd_commands_are_split_and_optional_flags_given():
    body = "python3 -m venv .venv && .venv/bin/dd run --ipc 1   # comment\ndd plugins [--all] [--json]\nsource x\n"
    assert dd_commands(body) == [["run", "--ipc", "1"], ["plugins", "--all", "--json"]]


def test_a_wrong_option_in_a_bash_block_fails(tmp_path, cli):
    with pytest.raises(Exception, match="(?i)no such option.*--ipcs"):
        check_bash(Block("X.md", 1, "bash", "dd run --ipcs 10\n", None), tmp_path, cli, {})


def test_a_wrong_key_in_a_toml_block_fails(tmp_path):
    from ddcore.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.runz"):
        check_toml(Block("X.md", 1, "toml", "[eval]\nrunz = 3\n", None), tmp_path)
    with pytest.raises(AssertionError, match="version"):
        check_toml(Block("X.md", 1, "toml", '[project]\nname = "x"\n[project.entry-points.ddcore]\nx = "x"\n', None), tmp_path)


# ----------------------------------------------------------------------------------------------
# `dd datasets` names the datasets of installed, inactive plugins
# ----------------------------------------------------------------------------------------------


TOY_DATASETS = """
from ddcore import hookimpl
from ddcore.testing import known_answer_dataset

name = "toyp"

@hookimpl
def dd_register_datasets(register):
    register("toy/clean", lambda options: known_answer_dataset("clean"), description="a toy")
"""


def test_dd_datasets_lists_inactive_plugins_datasets_with_the_flag(cli, fake_entry_points, plugin_module, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    fake_entry_points.add("toyp", plugin_module(TOY_DATASETS), dist="dd-toy")
    fake_entry_points.add("broken", plugin_module("raise ImportError('no torchaudio')"), dist="dd-broken")
    code, out, err = cli("datasets")
    assert code == 0, err
    assert re.search(r"toy/clean\s*│\s*toyp \(with --plugin toyp\)", out), out
    assert "digits" in out and "not listed" in out and "no torchaudio" in out
    code, out, err = cli("datasets", "--plugin", "toyp")
    assert code == 0 and "with --plugin" not in out and "toy/clean" in out
    code, out, err = cli("datasets", "--active-only")
    assert code == 0 and "toy/clean" not in out and "digits" in out


# ----------------------------------------------------------------------------------------------
# CONTRIBUTING's walk-through, from a clean venv
# ----------------------------------------------------------------------------------------------


def block_source(start: str) -> str:
    (found,) = [b.body for b in blocks("CONTRIBUTING.md") if b.body.startswith(start)]
    return found


@pytest.mark.slow
def test_contributing_walkthrough_from_a_clean_venv(tmp_path):
    """Step 1 (a file plugin), step 2 (the package with CONTRIBUTING's pyproject.toml, installed with
    ``pip install -e .``) and section 3 (its tests), in a new venv.

    The venv sees the project's environment (torch, ddcore, pytest; nothing is downloaded): it is made
    with ``--system-site-packages`` and, because the project's own interpreter is itself a venv, a
    ``.pth`` that adds the project venv's site-packages. pip runs with ``--no-deps --no-build-isolation``.
    """
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    Path(site, "ddcore_project_env.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)

    def run(*argv, cwd):
        done = subprocess.run([str(python), *map(str, argv)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    # Step 1: the one-off file.
    work = tmp_path / "work"
    work.mkdir()
    (work / "first_images.py").write_text(block_source("# first_images.py"), encoding="utf-8")
    run("-m", "ddcore_cli", "run", "--plugin", "./first_images.py", "--ipc", "10", "--set", "plugin.first-images.offset=5",
        "--eval-runs", "0", "--workers", "0", "--out", "run", "--cache-dir", tmp_path / "cache", "--quiet", cwd=work)  # fmt: skip
    manifest = json.loads((work / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["plugin"]["first-images"] == {"offset": 5}

    # Step 2: the package.
    package = tmp_path / "dd-first-images"
    (package / "dd_first_images").mkdir(parents=True)
    (package / "tests").mkdir()
    (package / "pyproject.toml").write_text(block_source("[project]"), encoding="utf-8")
    (package / "dd_first_images" / "__init__.py").write_text("", encoding="utf-8")
    (package / "dd_first_images" / "plugin.py").write_text(block_source("# first_images.py"), encoding="utf-8")
    (package / "tests" / "test_first_images.py").write_text(block_source("# tests/test_first_images.py"), encoding="utf-8")
    run("-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", ".", cwd=package)
    listed = {p["name"]: p for p in json.loads(run("-m", "ddcore_cli", "plugins", "--json", cwd=work))}
    first = listed["first-images"]
    assert (first["distribution"], first["version"], first["hooks"], first["status"]) == ("dd-first-images", "0.1.0", ["dd_select"], "ok")

    # Section 3: its tests.
    out = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=package)
    assert re.search(r"\b4 passed\b", out), out
