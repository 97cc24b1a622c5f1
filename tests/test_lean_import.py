"""Start-up stays lean: `import ddcore`, `dd --help` and the pytest plugin import no torch.

Each check runs in a fresh interpreter (this one has imported torch long ago). No timings here: the
numbers are machine-dependent; ``python -X importtime -m ddcore_cli --help`` shows where time goes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("torch", "torchvision", "accelerate", "kornia", "sklearn", "diffusers", "rich")


def imports_in_fresh_python(code: str) -> list[str]:
    """Run ``code`` in a new interpreter; the heavy modules it left in ``sys.modules``."""
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import sys as _sys
        print("HEAVY:" + ",".join(name for name in {HEAVY!r} if name in _sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    last = [line for line in done.stdout.splitlines() if line.startswith("HEAVY:")][-1]
    return [name for name in last.removeprefix("HEAVY:").split(",") if name]


def test_import_ddcore_and_its_light_names():
    code = """
        import ddcore
        from ddcore import ConfigError, DDError, Distiller, DistillSession, PluginError, hookimpl, hookspec
        assert "run" in dir(ddcore) and "Distiller" in ddcore.__all__
    """
    assert imports_in_fresh_python(code) == []


def test_light_modules():
    """What config validation, the CLI and hook modules need before any work."""
    code = """
        import ddcore.config, ddcore.distillers, ddcore.errors, ddcore.evaluation, ddcore.hookspecs
        import ddcore.plugins, ddcore.standalone, ddcore.vocab, ddcore.tm.config, ddcore.tm.presets
    """
    assert imports_in_fresh_python(code) == []


def test_heavy_names_still_load_on_demand():
    code = """
        import ddcore
        assert ddcore.DistilledSet.__module__ == "ddcore.distilled" and callable(ddcore.run)
        assert ddcore.teacher.__name__ == "ddcore.teacher"   # a submodule as an attribute
        try:
            ddcore.no_such_name
        except AttributeError:
            pass
        else:
            raise AssertionError("ddcore.no_such_name exists")
    """
    assert "torch" in imports_in_fresh_python(code)


def test_dd_help():
    """``dd --help``, every core command's ``--help`` and ``dd --version``, in one interpreter."""
    commands = [["--help"], ["run", "--help"], ["experts", "--help"], ["eval", "--help"], ["plugins", "--help"],
                ["show", "--help"], ["datasets", "--help"], ["distillers", "--help"], ["export", "--help"],
                ["compare", "--help"], ["--version"]]  # fmt: skip
    code = f"""
        from ddcore_cli.app import main
        for argv in {commands!r}:
            try:
                main(argv)
            except SystemExit as exc:
                assert not exc.code, (argv, exc.code)
    """
    assert imports_in_fresh_python(code) == []


def test_python_m_ddcore_cli_help():
    code = """
        import runpy, sys
        sys.argv = ["dd", "--help"]
        try:
            runpy.run_module("ddcore_cli", run_name="__main__")
        except SystemExit as exc:
            assert not exc.code, exc.code
    """
    assert imports_in_fresh_python(code) == []


def test_pytest_plugin_module():
    """``ddcore.testing`` is loaded into every pytest session (entry point ``pytest11``)."""
    assert imports_in_fresh_python("import ddcore.testing") == []
