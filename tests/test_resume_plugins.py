"""``--resume`` with plugins active: every plugin's state and metrics come out as in an uninterrupted run.

EDF (``edf``) keeps state across matching iterations: its activation maps, the iteration they were
computed at and its refresh counters, saved inside each checkpoint through ``dd_state_dict`` and
restored through ``dd_load_state_dict``. With ``interval = 2`` over 6 iterations the maps are computed
at iterations 0, 2 and 4: ``edf/cam_refreshes`` is 3 however the run was cut (a resumed run that lost
the counters reports 2, and a different ``edf/active_fraction``). ``diffsel`` selects and stitches the
initial set (saved as ``checkpoints/initial.pt``) and evaluates by knowledge distillation at the end.

The run is cut inside iteration 3 (after the checkpoint of iteration 2, whose EDF state holds one
refresh) and resumed in this process.
"""

from __future__ import annotations

import json

import pytest
import torch

from ddcore.distillers import checkpoint_paths
from ddcore.errors import PluginCrash
from ddcore.runner import resume_run, run
from ddcore.testing import InterruptAt

pytestmark = pytest.mark.slow

ITERATIONS, INTERVAL, CUT_AT = 6, 2, 3
TINY_PRIOR = {"steps": 4, "size": 8, "channels": [8, 16], "batch_size": 8, "checkpoint_every": 0}


def config(tmp_path, out: str) -> dict:
    return {
        "ipc": 1, "workers": 0, "distill": "tm", "out": str(tmp_path / out), "cache_dir": str(tmp_path / "cache"),
        "plugins": ["edf", "diffsel"],
        "tm": {"iterations": ITERATIONS, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "checkpoint_every": 2},
        "experts": {"num": 2, "batch_size": 512}, "eval": {"runs": 1, "epochs": 1, "width": 8},
        "plugin": {
            "edf": {"interval": INTERVAL, "alpha": 0.25, "cam_method": "gradcam"},
            "diffsel": {"pool_per_class": 6, "n_noise": 1, "batch_size": 30, "train": dict(TINY_PRIOR),
                        "teacher_epochs": 1, "kd": {"runs": 1, "epochs": 2}},
        },
    }  # fmt: skip


def final_checkpoint(run_dir) -> dict:
    newest = checkpoint_paths(run_dir / "checkpoints", "tm")[0]
    assert newest.name == f"tm-{ITERATIONS:08d}.pt"
    return torch.load(newest, map_location="cpu", weights_only=True)


def assert_same_state(a, b, where: str = "state") -> None:
    """Equal nested dicts/lists of tensors and plain values (tensors bit for bit)."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def whole_and_resumed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("resume-plugins")
    whole = run(config(tmp_path, "whole"))
    with pytest.raises(PluginCrash, match=f"killed at {CUT_AT}"):
        run(config(tmp_path, "cut"), [InterruptAt(at=CUT_AT)])
    cut = tmp_path / "cut"
    assert json.loads((cut / "manifest.json").read_text())["status"] == "failed"
    [at_cut] = checkpoint_paths(cut / "checkpoints", "tm")
    assert at_cut.name == "tm-00000002.pt"
    saved = torch.load(at_cut, map_location="cpu", weights_only=True)
    resumed = resume_run(cut)
    return whole, resumed, saved


def test_the_cut_checkpoint_holds_the_edf_state_of_its_iteration(whole_and_resumed):
    _, _, saved = whole_and_resumed
    assert saved["format"] == 2 and saved["distiller"] == "tm" and saved["step"] == 2
    edf = saved["plugins"]["edf"]
    assert edf["step"] == 0 and edf["refreshes"] == 1 and len(edf["active"]) == 1  # maps of iteration 0 only
    assert edf["maps"].shape == (10, 32, 32) and edf["targets"].tolist() == list(range(10))
    assert set(saved["plugins"]) == {"edf"}  # diffsel keeps no state across iterations


def test_plugin_metrics_survive_resume(whole_and_resumed):
    whole, resumed, _ = whole_and_resumed
    assert whole.metrics["edf/cam_refreshes"] == len(range(0, ITERATIONS, INTERVAL)) == 3
    assert resumed.metrics == whole.metrics  # edf/*, diffsel/kd_*, eval/* alike
    assert {"edf/active_fraction", "diffsel/kd_acc_mean", "eval/acc_mean"} <= set(resumed.metrics)


def test_plugin_state_and_records_survive_resume(whole_and_resumed):
    whole, resumed, _ = whole_and_resumed
    # the state each plugin would hand to a further resume, in the final checkpoint
    assert_same_state(final_checkpoint(resumed.out_dir)["plugins"], final_checkpoint(whole.out_dir)["plugins"], "plugins")
    final_edf = final_checkpoint(whole.out_dir)["plugins"]["edf"]
    assert final_edf["step"] == 4 and final_edf["refreshes"] == 3 and len(final_edf["active"]) == 3
    assert resumed.metrics["edf/active_fraction"] == pytest.approx(sum(final_edf["active"]) / 3)
    # what the plugins recorded in the manifest, and what diffsel put into the distilled set
    for key in ("edf", "diffsel/kd"):
        assert resumed.manifest["records"][key] == whole.manifest["records"][key], key
    assert resumed.distilled.meta["diffsel"] == whole.distilled.meta["diffsel"]
    assert resumed.distilled.meta["selected_by"] == "diffsel"
    # and the distillation itself
    assert torch.equal(resumed.distilled.images, whole.distilled.images)
    assert resumed.distilled.lr == whole.distilled.lr
    log = json.loads((resumed.out_dir / "tm_log.json").read_text())
    assert log == json.loads((whole.out_dir / "tm_log.json").read_text())
    assert [row["kept"] for row in log] == pytest.approx([0.75] * ITERATIONS, abs=1e-3)  # CPD (alpha 0.25) in every iteration


def test_the_selection_survives_resume(whole_and_resumed):
    """diffsel's selection is not redone: the resumed run starts from the saved initial set, and the
    selection file written before the cut is the uninterrupted run's."""
    whole, resumed, _ = whole_and_resumed
    assert "dd_select" not in resumed.manifest["hook_calls"]  # not called again; its stage is the cut run's, marked
    assert resumed.manifest["stages"]["select"]["resumed"] is True
    selection = "diffsel_selection.json"
    assert json.loads((resumed.out_dir / selection).read_text()) == json.loads((whole.out_dir / selection).read_text())


def test_the_selection_records_survive_resume(whole_and_resumed):
    """A resumed run reloads the initial set instead of selecting again; what selection recorded and how long it
    took come back from ``checkpoints/initial-records.json``."""
    whole, resumed, _ = whole_and_resumed
    selection_records = {key for key in whole.manifest["records"] if key.startswith("diffsel/")}
    assert selection_records  # diffsel recorded its pool and prior while selecting
    assert selection_records <= set(resumed.manifest["records"])
    cache_hits = {"trained_now", "reused"}  # the cut run found the prior and the pool cached by the whole run
    for key in selection_records:  # the same pool and prior
        mine, theirs = resumed.manifest["records"][key], whole.manifest["records"][key]
        assert mine.get("reused", True) is True and mine.get("trained_now", 0) == 0
        assert {k: v for k, v in mine.items() if k not in cache_hits} == {k: v for k, v in theirs.items() if k not in cache_hits}
    for stage in ("select", "initialize"):
        assert resumed.manifest["stages"][stage]["resumed"] is True
