"""Resume refusals name what the user changed: a config key before the data signature it also changes,
and a changed distiller as such (not as a leftover config table)."""

from __future__ import annotations

import pytest

from core_support import assert_cli_error
from ddcore.errors import PluginCrash
from ddcore.run_fingerprint import describe_difference, first_difference
from ddcore.runner import run
from ddcore.testing import InterruptAt


def test_a_config_key_is_reported_before_the_data_it_changes():
    saved = {"data.fingerprint": "aaaa", "data.image_shape": [1, 8, 8], "image_size": 8, "tm.eval_every": 0}
    now = {"data.fingerprint": "bbbb", "data.image_shape": [1, 16, 16], "image_size": 16, "tm.eval_every": 0}
    assert first_difference(saved, now) == "image_size"
    assert "option --image-size" in describe_difference("image_size", saved, now)
    now = {**saved, "data.fingerprint": "bbbb", "tm.eval_every": 2}  # the validation split changed the training data
    assert first_difference(saved, now) == "tm.eval_every"
    assert describe_difference("tm.eval_every", saved, now) == "tm.eval_every (the run has 0, now 2; option --set tm.eval_every=)"
    now = {**saved, "data.fingerprint": "bbbb"}  # only the data differs: then the data is named
    assert first_difference(saved, now) == "data.fingerprint"
    assert "the data (--data-root / --dataset)" in describe_difference("data.fingerprint", saved, now)


def test_an_option_added_later_at_its_default_does_not_block_a_resume():
    """A run saved before ``zca`` existed records no such key: ``zca = false`` now cannot have shaped it."""
    saved = {"image_size": 8, "plugins": []}
    assert first_difference(saved, {**saved, "zca": False, "robustness.lrs_weight": 0.5}) is None
    assert first_difference(saved, {**saved, "zca": True}) == "zca"  # not the default: it would shape the run
    assert first_difference(saved, {**saved, "robustness.lrs_weight": 0.7}) == "robustness.lrs_weight"
    assert first_difference({**saved, "zca": False}, saved) == "zca"  # a recorded key that is gone still counts


@pytest.fixture(scope="module")
def cut_tm_run(tmp_path_factory):
    """A tm run stopped inside iteration 2 (nothing distilled yet)."""
    base = tmp_path_factory.mktemp("resume-messages")
    config = {
        "ipc": 1, "workers": 0, "distill": "tm", "out": str(base / "cut"), "cache_dir": str(base / "cache"),
        "tm": {"iterations": 3, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "checkpoint_every": 1},
        "experts": {"num": 2, "batch_size": 512}, "eval": {"runs": 0, "epochs": 1, "width": 8},
    }  # fmt: skip
    with pytest.raises(PluginCrash, match="killed at 2"):
        run(config, [InterruptAt(at=2)])
    return base / "cut"


def test_resume_names_the_changed_option_not_the_data(cut_tm_run, cli):
    before = {p.name: p.stat().st_mtime_ns for p in cut_tm_run.rglob("*")}
    line = assert_cli_error(cli("run", "--resume", cut_tm_run, "--image-size", "16", "-q"), "image_size", "--image-size")
    assert "data.fingerprint" not in line and "data.image_shape" not in line
    line = assert_cli_error(cli("run", "--resume", cut_tm_run, "--set", "tm.eval_every=2", "-q"),
                            "tm.eval_every (the run has 0, now 2; option --set tm.eval_every=)")  # fmt: skip
    assert "data." not in line
    assert {p.name: p.stat().st_mtime_ns for p in cut_tm_run.rglob("*")} == before  # nothing written


def test_resume_with_another_distiller_says_it_cannot_change(cut_tm_run, cli):
    line = assert_cli_error(cli("run", "--resume", cut_tm_run, "--distill", "none", "-q"),
                            "the distiller of a run cannot change on resume", "the run used 'tm'")  # fmt: skip
    assert "config table" not in line
