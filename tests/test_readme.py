"""The README's two opening commands stay true, CI runs the README's test command verbatim, and the
example config neither needs an uninstalled plugin nor misnames the run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(python3 -m venv .venv && [^\n]+)\n```", text)[:2]


def test_readme_opens_with_setup_and_test_commands():
    run_job, test_job = readme_commands()
    assert "/dd run" in run_job and "--dataset" not in run_job  # the default dataset is digits
    assert test_job.endswith(".venv/bin/python -m pytest")


def test_ci_runs_the_readme_test_command():
    _, test_job = readme_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_job in ci_lines


# ----------------------------------------------------------------------------------------------
# The example config: its plugins are installed by a set-up the README gives, and its name does
# not mislead (issue 14, kind 6). tests/test_docs_snippets.py validates the block itself.
# ----------------------------------------------------------------------------------------------


def readme_config_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    return block


def entry_point_names(pyproject: Path) -> set[str]:
    import tomllib

    return set(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"].get("entry-points", {}).get("ddcore", {}))


def test_readme_config_plugins_are_installed_by_a_readme_setup_that_the_config_names():
    import tomllib

    block = readme_config_block()
    setup = " ".join(readme_commands())
    bundled = entry_point_names(ROOT / "pyproject.toml")
    for plugin in tomllib.loads(block).get("plugins", []):
        if plugin in bundled:
            continue  # installed with ddcore by either set-up command
        examples = [p.parent for p in (ROOT / "examples").glob("*/pyproject.toml") if plugin in entry_point_names(p)]
        assert examples, f"README config names plugin {plugin!r}, which neither ddcore nor an example provides"
        assert f"./examples/{examples[0].name}" in setup, f"no README set-up command installs {plugin!r}"
        (line,) = [line for line in block.splitlines() if line.startswith("plugins")]
        assert f"examples/{examples[0].name}" in line, f"the config's plugins line must say where {plugin!r} comes from"


def test_readme_config_name_follows_the_ipc_of_the_run():
    """`dd run --config my-run.toml --ipc 1` must not land in a folder named ...-ipc10."""
    import tomllib

    from ddcore.config import build_config
    from ddcore.runner import run_name

    data = tomllib.loads(readme_config_block())
    for ipc in (1, 10, 50):
        name = run_name(build_config({**{k: v for k, v in data.items() if not isinstance(v, dict)}, "ipc": ipc}))
        assert name.endswith(f"-ipc{ipc}"), name
