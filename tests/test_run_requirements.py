"""A plugin's ``run_requirements`` are checked against the run's config before any work."""

from __future__ import annotations

import pytest

from core_support import assert_cli_error
from ddcore import hookimpl
from ddcore.errors import ConfigError
from ddcore.runner import Pipeline


class NeedsMatching:
    name = "needs-tm"
    run_requirements = {"distill": "tm"}

    @hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        return None


def test_a_requirement_the_run_does_not_meet_is_one_line_before_any_work(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        Pipeline({"distill": "none", "out": str(out), "cache_dir": str(tmp_path / "cache")}, [NeedsMatching()])
    assert str(info.value) == "plugin 'needs-tm' needs distill = 'tm', but the run has distill = 'none'; pass --distill tm"
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_a_met_requirement_passes(tmp_path):
    pipeline = Pipeline({"distill": "tm", "cache_dir": str(tmp_path / "cache")}, [NeedsMatching()], write=False)
    assert pipeline.config.distill == "tm"


def test_the_cli_reports_it_with_exit_code_2(cli, tmp_path):
    plugin = tmp_path / "needs_tm.py"
    plugin.write_text(
        "from ddcore import hookimpl\nrun_requirements = {'distill': 'tm'}\n"
        "@hookimpl\ndef dd_pixel_weights(ctx, images, labels, step):\n    return None\n"
    )
    result = cli("run", "--plugin", plugin, "--out", tmp_path / "run", "--quiet")
    assert_cli_error(result, "needs distill = 'tm'", "--distill tm")
    assert not (tmp_path / "run").exists()
