"""``tm.eval_every``: the initial set is a candidate, ``records.tm.best_iteration`` uses tm_log.json's
(0-based) numbering, one line says which set was kept, and a resumed run chooses exactly as an
uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch

from ddcore.errors import PluginCrash
from ddcore.runner import resume_run, run
from ddcore.testing import InterruptAt


def config(base, out: str) -> dict:
    return {
        "ipc": 1, "workers": 0, "distill": "tm", "out": str(base / out), "cache_dir": str(base / "cache"),
        "tm": {"iterations": 4, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "checkpoint_every": 1,
               "eval_every": 2},
        "experts": {"num": 2, "batch_size": 512}, "eval": {"runs": 0, "epochs": 1, "width": 8},
    }  # fmt: skip


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval-every")
    return base, run(config(base, "whole"))


def test_best_iteration_is_a_tm_log_row_or_the_initial_set(whole):
    _, result = whole
    records = json.loads((result.out_dir / "manifest.json").read_text())["records"]["tm"]
    log = json.loads((result.out_dir / "tm_log.json").read_text())
    assert [row["iteration"] for row in log] == [0, 1, 2, 3]
    evaluated = {row["iteration"]: row["val_acc"] for row in log if "val_acc" in row}
    assert sorted(evaluated) == [1, 3]
    candidates = {-1: records["initial_val_accuracy"], **evaluated}
    best = records["best_iteration"]
    assert records["best_val_accuracy"] == max(candidates.values()) == candidates[best]
    assert best == min(k for k, v in candidates.items() if v == max(candidates.values()))  # ties keep the earlier
    which = "the initial set (iteration -1)" if best == -1 else f"the set after iteration {best}"
    line = f"trajectory matching kept {which}: validation accuracy {records['best_val_accuracy']:.2f}%"
    assert line in (result.out_dir / "run.log").read_text()


def test_resume_chooses_as_the_uninterrupted_run(whole):
    base, result = whole
    with pytest.raises(PluginCrash, match="killed at 3"):
        run(config(base, "cut"), [InterruptAt(at=3)])
    resumed = resume_run(base / "cut")
    assert torch.equal(resumed.distilled.images, result.distilled.images)
    for name in ("tm_log.json",):
        assert json.loads((base / "cut" / name).read_text()) == json.loads((result.out_dir / name).read_text())
    records = [json.loads((d / "manifest.json").read_text())["records"]["tm"] for d in (base / "cut", result.out_dir)]
    assert records[0] == records[1]
