"""The README's two opening commands stay true, and CI runs the README's test command verbatim."""

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
