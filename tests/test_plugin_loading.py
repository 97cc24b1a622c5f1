"""Finding, importing and registering plugins: entry points, local files, objects, plugin options.

Every failure is a one-line ``Error: ...`` on stderr with exit status 2 that names the plugin and
what to change; nothing is written for a run that cannot start.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from core_support import assert_cli_error, write_plugin_file

GOOD_PLUGIN = """
    from ddcore import hookimpl

    @hookimpl
    def dd_evaluate(ctx, distilled):
        return {"images": float(distilled.images.shape[0])}
"""

MISSPELT_HOOK = """
    from ddcore import hookimpl

    @hookimpl
    def dd_selct(ctx, dataset, ipc):
        return None
"""

UNKNOWN_ARGUMENT = """
    from ddcore import hookimpl

    @hookimpl
    def dd_select(ctx, dataset, ipc, budget):
        return None
"""

WITH_OPTIONS = """
    from dataclasses import dataclass

    from ddcore import hookimpl


    @dataclass
    class Options:
        beta: float = 1.0
        mode: str = "fast"


    config_class = Options


    @hookimpl
    def dd_evaluate(ctx, distilled):
        return {"beta": ctx.plugin_config("opted").beta}
"""


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """rich tables wrap at 80 columns when stdout is not a terminal; keep plugin names whole."""
    monkeypatch.setenv("COLUMNS", "240")


def run_json(result) -> dict:
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return json.loads(out)


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------


def test_unknown_plugin_lists_the_installed_ones(cli, fake_entry_points, tiny_run_args, tmp_path):
    fake_entry_points.add("alpha", "dd_alpha_not_imported.plugin", dist="dd-alpha")
    fake_entry_points.add("beta", "dd_beta_not_imported.plugin", dist="dd-beta")

    result = cli(*tiny_run_args("--plugin", "gamma"))

    line = assert_cli_error(result, 'Unknown plugin "gamma"', "alpha", "beta", "--plugin")
    assert "Installed: alpha, beta" in line
    assert not (tmp_path / "run").exists()


def test_unknown_plugin_with_nothing_installed(cli, fake_entry_points, tiny_run_args, tmp_path):
    assert_cli_error(cli(*tiny_run_args("--plugin", "herding")), 'Unknown plugin "herding"', "Installed: none", "--plugin")
    assert not (tmp_path / "run").exists()


def test_requested_plugin_whose_module_is_missing(cli, fake_entry_points, tiny_run_args, tmp_path):
    fake_entry_points.add("broken", "dd_no_such_module_xyz.plugin", dist="dd-broken", version="2.3")

    assert_cli_error(
        cli(*tiny_run_args("--plugin", "broken")),
        'Plugin "broken"',
        "dd-broken 2.3",
        "dd_no_such_module_xyz.plugin",
        "failed to import",
        "ModuleNotFoundError",
    )
    assert not (tmp_path / "run").exists()


def test_requested_plugin_whose_import_raises(cli, fake_entry_points, plugin_module, tiny_run_args, tmp_path):
    module = plugin_module('raise ImportError("dd-needy needs libfoo >= 2")\n')
    fake_entry_points.add("needy", module, dist="dd-needy", version="0.4")

    assert_cli_error(
        cli(*tiny_run_args("--plugin", "needy")),
        'Plugin "needy"',
        "dd-needy 0.4",
        "ImportError: dd-needy needs libfoo >= 2",
    )
    assert not (tmp_path / "run").exists()


def test_requested_plugin_whose_attribute_is_missing(cli, fake_entry_points, plugin_module, tiny_run_args):
    module = plugin_module(GOOD_PLUGIN)
    fake_entry_points.add("attr", f"{module}:no_such_object", dist="dd-attr", version="1.1")

    assert_cli_error(cli(*tiny_run_args("--plugin", "attr")), 'Plugin "attr"', "dd-attr 1.1", "AttributeError")


def test_two_distributions_claiming_one_name(cli, fake_entry_points, tiny_run_args, tmp_path):
    fake_entry_points.add("herding", "dd_herding.plugin", dist="dd-herding", version="0.1.0")
    fake_entry_points.add("herding", "herding_fork.plugin", dist="herding-fork", version="9.9")

    assert_cli_error(
        cli(*tiny_run_args("--plugin", "herding")),
        'Plugin name "herding"',
        "dd-herding 0.1.0",
        "herding-fork 9.9",
        "Uninstall one",
    )
    assert not (tmp_path / "run").exists()


def test_one_distribution_seen_twice_is_not_a_conflict(cli, fake_entry_points, plugin_module, tiny_run_args):
    """The same distribution found twice on sys.path (same name and target) is one plugin."""
    module = plugin_module(GOOD_PLUGIN)
    fake_entry_points.add("good", module, dist="dd-good")
    fake_entry_points.add("good", module, dist="dd-good")

    payload = run_json(cli(*tiny_run_args("--plugin", "good", "--json")))
    assert payload["metrics"] == {"good/images": 10.0}


def test_unrequested_broken_plugin_does_not_break_a_run(cli, fake_entry_points, plugin_module, tiny_run_args, tmp_path):
    fake_entry_points.add("broken", "dd_no_such_module_xyz.plugin", dist="dd-broken")
    fake_entry_points.add("typo", plugin_module(MISSPELT_HOOK), dist="dd-typo")
    fake_entry_points.add("good", plugin_module(GOOD_PLUGIN), dist="dd-good", version="3.1")

    code, out, err = cli(*tiny_run_args("--plugin", "good", "--json"))

    assert code == 0, err
    assert err == ""
    assert json.loads(out)["metrics"] == {"good/images": 10.0}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    requested = [p for p in manifest["plugins"] if p["source"] != "builtin"]
    assert [(p["name"], p["source"], p["distribution"], p["version"]) for p in requested] == [
        ("good", "entry-point", "dd-good", "3.1")
    ]

    # and with no --plugin at all, nothing installed is even looked at
    assert cli(*tiny_run_args("--json", out=tmp_path / "run2"))[0] == 0


def test_dd_plugins_lists_broken_plugins_without_crashing(cli, fake_entry_points, plugin_module):
    fake_entry_points.add("broken", "dd_no_such_module_xyz.plugin", dist="dd-broken", version="2.3")
    fake_entry_points.add("typo", plugin_module(MISSPELT_HOOK), dist="dd-typo")
    fake_entry_points.add("twice", "one.plugin", dist="dd-one")
    fake_entry_points.add("twice", "two.plugin", dist="dd-two")
    fake_entry_points.add("good", plugin_module(GOOD_PLUGIN), dist="dd-good", version="3.1")

    code, out, err = cli("plugins")
    assert code == 0, err
    assert "Traceback" not in err
    for name in ("broken", "typo", "twice", "good", "dd-broken", "dd-good"):
        assert name in out
    assert "error" in out and "ok" in out

    code, out, err = cli("plugins", "--json")
    assert code == 0, err
    listed = json.loads(out)
    by_name: dict[str, list[dict]] = {}
    for info in listed:
        by_name.setdefault(info["name"], []).append(info)
    assert sorted(by_name) == ["broken", "good", "twice", "typo"]

    (broken,) = by_name["broken"]
    assert broken["status"] == "error"
    assert "ModuleNotFoundError" in broken["error"] and "dd-broken 2.3" in broken["error"]
    assert (broken["distribution"], broken["version"]) == ("dd-broken", "2.3")

    (typo,) = by_name["typo"]
    assert typo["status"] == "error" and "dd_selct" in typo["error"]

    assert [info["status"] for info in by_name["twice"]] == ["error", "error"]
    assert {info["distribution"] for info in by_name["twice"]} == {"dd-one", "dd-two"}
    assert "dd-two" in by_name["twice"][0]["error"] and "dd-one" in by_name["twice"][1]["error"]

    (good,) = by_name["good"]
    assert good["status"] == "ok" and good["error"] is None
    assert good["hooks"] == ["dd_evaluate"]
    assert (good["distribution"], good["version"], good["source"]) == ("dd-good", "3.1", "entry-point")


def test_dd_plugins_with_nothing_installed(cli, fake_entry_points):
    code, out, err = cli("plugins", "--json")
    assert (code, json.loads(out), err) == (0, [], "")


def test_two_entry_point_names_for_one_module(cli, fake_entry_points, plugin_module, tiny_run_args):
    module = plugin_module(GOOD_PLUGIN)
    fake_entry_points.add("good", module, dist="dd-good")
    fake_entry_points.add("good-alias", module, dist="dd-good")

    try:
        result = cli(*tiny_run_args("--plugin", "good", "--plugin", "good-alias"))
    except ValueError as exc:  # escapes main(): what the user sees is a traceback
        pytest.fail(f"raw {type(exc).__name__} escaped dd run: {exc}")
    assert_cli_error(result, "good", "good-alias")


# ----------------------------------------------------------------------------------------------
# Local files and objects
# ----------------------------------------------------------------------------------------------


def test_local_plugin_file(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(
        tmp_path,
        "localmetric",
        """
        from ddcore import hookimpl

        @hookimpl
        def dd_evaluate(ctx, distilled):
            return {"count": float(distilled.images.shape[0])}
        """,
    )

    payload = run_json(cli(*tiny_run_args("--plugin", path, "--json")))

    assert payload["metrics"] == {"localmetric/count": 10.0}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    (info,) = [p for p in manifest["plugins"] if p["source"] != "builtin"]
    assert info["name"] == "localmetric"
    assert info["source"] == "file"
    assert info["value"] == str(path.resolve())
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["hooks"] == ["dd_evaluate"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"] == {"localmetric/count": 10.0}


def test_missing_plugin_file(cli, tiny_run_args, tmp_path):
    missing = tmp_path / "plugins" / "nope.py"
    assert_cli_error(cli(*tiny_run_args("--plugin", missing)), str(missing), "does not exist", "--plugin")
    assert not (tmp_path / "run").exists()


def test_local_plugin_file_that_fails_to_import(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "oops", "import dd_no_such_dependency_xyz\n")
    assert_cli_error(
        cli(*tiny_run_args("--plugin", path)), 'Plugin "oops"', str(path), "ModuleNotFoundError", "dd_no_such_dependency_xyz"
    )
    assert not (tmp_path / "run").exists()


def test_misspelt_hook_is_an_error(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "typo", MISSPELT_HOOK)
    assert_cli_error(cli(*tiny_run_args("--plugin", path)), 'Plugin "typo"', "unknown hook", "dd_selct")
    assert not (tmp_path / "run").exists()


def test_misspelt_hook_in_an_entry_point_plugin(cli, fake_entry_points, plugin_module, tiny_run_args):
    fake_entry_points.add("typo", plugin_module(MISSPELT_HOOK), dist="dd-typo", version="0.2")
    assert_cli_error(cli(*tiny_run_args("--plugin", "typo")), 'Plugin "typo"', "dd-typo 0.2", "dd_selct")


def test_hook_with_an_argument_the_spec_lacks(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "greedy", UNKNOWN_ARGUMENT)
    assert_cli_error(cli(*tiny_run_args("--plugin", path)), 'Plugin "greedy"', "dd_select", "budget")
    assert not (tmp_path / "run").exists()


def test_local_plugin_named_like_a_builtin(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "eval", GOOD_PLUGIN)
    assert_cli_error(cli(*tiny_run_args("--plugin", path)), '"eval"', "reserved for a built-in")


class FirstImages:
    """A plugin object: the first ``ipc`` training images of each class."""

    name = "first-images"

    def __init__(self) -> None:
        self.calls = 0

    from ddcore import hookimpl as _hookimpl

    @_hookimpl
    def dd_select(self, ctx, dataset, ipc):
        from ddcore import Selection

        self.calls += 1
        chosen = [indices[i] for indices in dataset.indices_by_class("train") for i in range(ipc)]
        images, labels = dataset.load("train", chosen)
        return Selection(images=images, labels=labels, indices=torch.tensor(chosen), meta={"method": "first"})


def test_plugin_object_passed_to_run(run_tiny):
    plugin = FirstImages()

    result = run_tiny(plugins=[plugin], eval={"runs": 0})

    assert plugin.calls == 1
    assert result.distilled.meta["selected_by"] == "first-images"
    assert result.distilled.images.shape[0] == 10
    infos = [p for p in result.manifest["plugins"] if p["source"] != "builtin"]
    assert [(p["name"], p["source"], p["value"], p["hooks"]) for p in infos] == [
        ("first-images", "object", "FirstImages", ["dd_select"])
    ]


def test_plugin_object_with_a_misspelt_hook(run_tiny):
    from ddcore import PluginLoadError, hookimpl

    class Typo:
        name = "typo-object"

        @hookimpl
        def dd_selct(self, ctx, dataset, ipc):
            return None

    with pytest.raises(PluginLoadError, match=r'Plugin "typo-object".*dd_selct'):
        run_tiny(plugins=[Typo()])


# ----------------------------------------------------------------------------------------------
# Plugin options ([plugin.<name>] tables)
# ----------------------------------------------------------------------------------------------


def test_options_table_for_an_inactive_plugin(cli, tiny_run_args, tmp_path):
    config = tmp_path / "dd.toml"
    config.write_text('ipc = 1\n\n[plugin.ghost]\nbeta = 2.0\n', encoding="utf-8")

    assert_cli_error(cli(*tiny_run_args("--config", config)), "[plugin.ghost]", "not active", "--plugin ghost")
    assert not (tmp_path / "run").exists()


def test_options_reach_the_plugin(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "opted", WITH_OPTIONS)
    payload = run_json(cli(*tiny_run_args("--plugin", path, "--set", "plugin.opted.beta=3", "--json")))
    assert payload["metrics"] == {"opted/beta": 3.0}


def test_option_of_the_wrong_type_from_a_flag(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "opted", WITH_OPTIONS)
    assert_cli_error(
        cli(*tiny_run_args("--plugin", path, "--set", "plugin.opted.beta=ten")),
        "'plugin.opted.beta'",
        "expected a number",
        "'ten'",
    )
    assert not (tmp_path / "run").exists()


def test_option_of_the_wrong_type_in_the_config_file(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "opted", WITH_OPTIONS)
    config = tmp_path / "dd.toml"
    config.write_text(f'plugins = ["{path}"]\n\n[plugin.opted]\nmode = 3\n', encoding="utf-8")

    assert_cli_error(cli(*tiny_run_args("--config", config)), "'plugin.opted.mode'", "expected a string")
    assert not (tmp_path / "run").exists()


def test_unknown_option_suggests_the_right_one(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "opted", WITH_OPTIONS)
    assert_cli_error(
        cli(*tiny_run_args("--plugin", path, "--set", "plugin.opted.betta=2")),
        "unknown config key 'plugin.opted.betta'",
        "did you mean 'plugin.opted.beta'",
    )


def test_options_for_a_plugin_that_takes_none(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "plain", GOOD_PLUGIN)
    assert_cli_error(
        cli(*tiny_run_args("--plugin", path, "--set", "plugin.plain.beta=2")), "[plugin.plain]", "takes no options"
    )


def test_dd_eval_keeps_a_local_plugins_options(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "opted", WITH_OPTIONS)
    assert run_json(cli(*tiny_run_args("--plugin", path, "--set", "plugin.opted.beta=3", "--json")))["metrics"] == {
        "opted/beta": 3.0
    }

    code, out, err = cli("eval", tmp_path / "run", "--eval-runs", "0")

    assert code == 0, err
    (written,) = (tmp_path / "run").glob("eval-*.json")
    assert json.loads(written.read_text())["metrics"] == {"opted/beta": 3.0}
