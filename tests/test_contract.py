"""The hook contract: names, argument names, call semantics, docstrings and documentation.

Renaming a hook or an argument, adding or removing a hook, or changing a hook's ``firstresult`` flag
breaks plugins; each such change must fail here until the table below, ``ddcore/hookspecs.py`` and the
hook reference in ``CONTRIBUTING.md`` agree again.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

from ddcore import hookspecs

CONTRIBUTING = Path(__file__).resolve().parent.parent / "CONTRIBUTING.md"

#: Every hook and its argument names, in order (kedro's pinned table). Changing a row breaks plugins.
HOOK_ARGNAMES = [
    ("dd_register_datasets", ("register",)),
    ("dd_register_commands", ("cli",)),
    ("dd_select", ("ctx", "dataset", "ipc")),
    ("dd_initialize", ("ctx", "selection")),
    ("dd_pixel_weights", ("ctx", "images", "labels", "step")),
    ("dd_supervision_weights", ("ctx", "losses", "distances", "step")),
    ("dd_evaluate", ("ctx", "distilled")),
    ("dd_register_distillers", ("register",)),
    ("dd_state_dict", ("ctx",)),
    ("dd_load_state_dict", ("ctx", "state")),
]

#: The "exactly one strategy" hooks; every other hook collects all answers.
FIRSTRESULT_HOOKS = {"dd_select", "dd_initialize"}

DOCSTRING_FIELDS = ("When:", "Returns:", "Combination:", "Processes:")


def spec_hooks() -> dict[str, object]:
    """The hook specs defined in ``ddcore.hookspecs``: functions whose name starts with ``dd_``."""
    return {name: obj for name, obj in vars(hookspecs).items() if name.startswith("dd_") and inspect.isfunction(obj)}


def argnames(function: object) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def documented_hook_headings() -> set[str]:
    """The ``### dd_...(...)`` headings of CONTRIBUTING.md, stripped."""
    lines = CONTRIBUTING.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if re.match(r"###\s+dd_\w+\s*\(", line)}


@pytest.fixture(scope="module")
def pm():
    from ddcore.plugins import DDPluginManager

    return DDPluginManager()  # the hook specs only; no plugins


# ----------------------------------------------------------------------------------------------
# Documentation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", sorted(spec_hooks()))
def test_every_hook_is_documented(hook: str) -> None:
    heading = f"### {hook}({', '.join(argnames(spec_hooks()[hook]))})"
    assert heading in documented_hook_headings(), (
        f"CONTRIBUTING.md has no heading {heading!r}; add or update the hook's section in the hook reference"
    )


def test_no_stale_hook_headings() -> None:
    expected = {f"### {name}({', '.join(argnames(spec))})" for name, spec in spec_hooks().items()}
    stale = documented_hook_headings() - expected
    assert not stale, f"CONTRIBUTING.md documents hooks or signatures that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("hook", sorted(spec_hooks()))
def test_spec_docstring_states_the_contract(hook: str) -> None:
    doc = inspect.getdoc(spec_hooks()[hook]) or ""
    missing = [field for field in DOCSTRING_FIELDS if field not in doc]
    assert not missing, f"{hook}'s docstring lacks {missing}"
    undocumented = [name for name in argnames(spec_hooks()[hook]) if not re.search(rf"^\s*{name}:", doc, re.M)]
    assert not undocumented, f"{hook}'s docstring has no 'Args:' entry for {undocumented}"


# ----------------------------------------------------------------------------------------------
# Signatures and call semantics
# ----------------------------------------------------------------------------------------------


def test_the_set_of_hooks_is_pinned() -> None:
    assert set(spec_hooks()) == {hook for hook, _ in HOOK_ARGNAMES}


@pytest.mark.parametrize(("hook", "expected"), HOOK_ARGNAMES)
def test_hook_signatures(hook: str, expected: tuple[str, ...], pm) -> None:
    assert hook in spec_hooks(), f"hook {hook} is missing from ddcore.hookspecs"
    assert argnames(spec_hooks()[hook]) == expected
    assert tuple(getattr(pm.hook, hook).spec.argnames) == expected  # what pluggy validates plugins against


@pytest.mark.parametrize("hook", [hook for hook, _ in HOOK_ARGNAMES])
def test_firstresult_flags(hook: str, pm) -> None:
    opts = getattr(pm.hook, hook).spec.opts
    assert opts["firstresult"] is (hook in FIRSTRESULT_HOOKS)
    assert opts["historic"] is False


def test_hookimpl_is_the_public_marker_for_project_ddcore() -> None:
    import ddcore
    from ddcore import hookimpl

    assert isinstance(hookimpl, pluggy.HookimplMarker)
    assert hookimpl.project_name == "ddcore" == hookspecs.PROJECT_NAME
    assert hookimpl is hookspecs.hookimpl and "hookimpl" in ddcore.__all__

    @hookimpl(trylast=True)
    def dd_select(ctx, dataset, ipc):
        return None

    assert getattr(dd_select, "ddcore_impl")["trylast"] is True


def test_hookimpl_marks_a_plugin_the_manager_accepts(pm) -> None:
    from ddcore import hookimpl

    class Inline:
        @hookimpl
        def dd_pixel_weights(self, images):  # a subset of the arguments is allowed
            return None

    plugin = Inline()
    pm.register(plugin, name="contract-inline")
    try:
        assert [impl.plugin_name for impl in pm.hook.dd_pixel_weights.get_hookimpls()] == ["contract-inline"]
    finally:
        pm.unregister(plugin)


# ----------------------------------------------------------------------------------------------
# Built-ins are ordinary plugins
# ----------------------------------------------------------------------------------------------

BUILTIN_IMPLS = [
    # (plugin name, module, the hook it implements, registered trylast)
    ("datasets", "ddcore.builtin.datasets", "dd_register_datasets", False),
    ("random-real", "ddcore.builtin.selection", "dd_select", True),
    ("as-selected", "ddcore.builtin.initialize", "dd_initialize", True),
    ("eval", "ddcore.builtin.evaluate", "dd_evaluate", False),
    ("robustness", "ddcore.builtin.robustness", "dd_evaluate", False),
    ("tm", "ddcore.tm.plugin", "dd_register_distillers", False),
]


@pytest.mark.parametrize(("name", "module", "hook", "trylast"), BUILTIN_IMPLS)
def test_builtins_are_registered_like_any_plugin(dd_pm, name: str, module: str, hook: str, trylast: bool) -> None:
    import importlib

    pm = dd_pm()
    assert pm.get_plugin(name) is importlib.import_module(module)
    info = pm.infos[name]
    assert info.source == "builtin" and info.hooks == [hook]
    impls = [impl for impl in getattr(pm.hook, hook).get_hookimpls() if impl.plugin_name == name]
    assert len(impls) == 1
    assert impls[0].trylast is trylast and impls[0].tryfirst is False
    assert not impls[0].hookwrapper and not getattr(impls[0], "wrapper", False)


def test_builtins_are_exactly_these_and_a_plugin_sits_beside_them(dd_pm) -> None:
    from ddcore import hookimpl
    from ddcore.plugins import BUILTIN_NAMES

    class Selector:
        name = "contract-selector"

        @hookimpl
        def dd_select(self, ctx, dataset, ipc):
            return None

    pm = dd_pm([Selector()])
    assert [info.name for info in pm.plugin_infos()] == ["datasets", "random-real", "as-selected", "eval", "robustness", "tm", "contract-selector"]
    assert BUILTIN_NAMES == {name for name, *_ in BUILTIN_IMPLS}
    # The default answers last; the requested plugin is asked first, through the same hook caller.
    callers = [impl.plugin_name for impl in reversed(pm.hook.dd_select.get_hookimpls())]
    assert callers == ["contract-selector", "random-real"]
