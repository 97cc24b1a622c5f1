"""How a local plugin file is named, and a name requested from two sources (issue 14, kind 5).

A file plugin is named by its module's ``name`` attribute when it sets one, else after its file stem
(``_`` -> ``-``); the same name from an installed package and a file (or from two files) is an error
naming both sources, in either order, before any work.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core_support import assert_cli_error, write_plugin_file
from ddcore import PluginLoadError
from ddcore.plugins import get_plugin_manager, load_file_plugin

ROOT = Path(__file__).resolve().parents[1]


def contributing_first_images() -> str:
    """The source of CONTRIBUTING.md's one-file plugin ``first_images.py``."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(# first_images\.py.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "CONTRIBUTING.md must hold exactly one first_images.py block"
    return blocks[0]


def test_a_renamed_copy_keeps_its_name_attribute(tmp_path):
    source = contributing_first_images()
    assert 'name = PLUGIN_NAME' in source and 'PLUGIN_NAME = "first-images"' in source
    path = write_plugin_file(tmp_path, "my_selector", source)
    _, info = load_file_plugin(str(path))
    assert (info.name, info.source, info.value) == ("first-images", "file", str(path.resolve()))


def test_a_file_without_a_name_is_named_after_its_stem(tmp_path):
    source = contributing_first_images().replace("name = PLUGIN_NAME", "pass")
    path = write_plugin_file(tmp_path, "my_selector", source.replace('PLUGIN_NAME = "first-images"', 'PLUGIN_NAME = "my-selector"'))
    _, info = load_file_plugin(str(path))
    assert info.name == "my-selector"


def test_renamed_copy_takes_its_options_table(cli, tiny_run_args, tmp_path):
    """Issue 14's input: this failed with "no options are known for plugin 'first-images'"."""
    path = write_plugin_file(tmp_path, "my_selector", contributing_first_images())
    config = tmp_path / "run.toml"
    config.write_text('ipc = 1\n\n[plugin.first-images]\noffset = 5\n', encoding="utf-8")
    code, out, err = cli(*tiny_run_args("--plugin", path, "--config", config))
    assert code == 0, out + err
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["plugin"]["first-images"] == {"offset": 5}
    requested = [p for p in manifest["plugins"] if p["source"] == "file"]
    assert [(p["name"], p["value"]) for p in requested] == [("first-images", str(path.resolve()))]


def test_options_of_the_stem_name_are_refused_for_a_named_file(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(tmp_path, "my_selector", contributing_first_images())
    assert_cli_error(cli(*tiny_run_args("--plugin", path, "--set", "plugin.my-selector.offset=1")), "my-selector")
    assert not (tmp_path / "run").exists()


@pytest.fixture
def installed_first_images(fake_entry_points, plugin_module):
    module = plugin_module(contributing_first_images())
    fake_entry_points.add("first-images", module, dist="dd-first-images", version="1.0")
    return module


@pytest.mark.parametrize("order", ["package-first", "file-first"])
def test_a_package_and_a_file_under_one_name_is_an_error_naming_both(installed_first_images, tmp_path, order):
    path = write_plugin_file(tmp_path, "first_images", contributing_first_images())
    requests = ["first-images", str(path)] if order == "package-first" else [str(path), "first-images"]
    with pytest.raises(PluginLoadError) as error:
        get_plugin_manager(requests)
    message = str(error.value)
    assert '"first-images"' in message and "dd-first-images 1.0" in message and f"file {path.resolve()}" in message


def test_the_clash_via_the_cli_stops_before_any_work(cli, tiny_run_args, installed_first_images, tmp_path):
    path = write_plugin_file(tmp_path, "my_plugin", contributing_first_images())
    result = cli(*tiny_run_args("--plugin", "first-images", "--plugin", path))
    assert_cli_error(result, "first-images", "installed package dd-first-images 1.0", str(path.resolve()))
    assert not (tmp_path / "run").exists()


def test_two_files_claiming_one_name_is_an_error(tmp_path):
    one = write_plugin_file(tmp_path, "one", contributing_first_images())
    two = write_plugin_file(tmp_path, "two", contributing_first_images())
    with pytest.raises(PluginLoadError, match="requested twice from different sources"):
        get_plugin_manager([str(one), str(two)])


def test_the_same_file_or_package_twice_is_registered_once(installed_first_images, tmp_path):
    path = write_plugin_file(tmp_path, "first_images", contributing_first_images())
    pm = get_plugin_manager([str(path), str(path)])
    assert [info.name for info in pm.requested()] == ["first-images"]
    pm = get_plugin_manager(["first-images", "first-images"])
    assert [(info.name, info.source) for info in pm.requested()] == [("first-images", "entry-point")]
