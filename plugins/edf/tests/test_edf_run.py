"""End to end: `dd run --plugin edf --distill tm` on digits, tiny settings."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import ddcore

TINY_EVAL = {"runs": 1, "epochs": 2, "width": 8, "batch_size": 64}
#: 4 matching iterations from epoch 0 of one 2-epoch expert without augmentation: the cheapest real run.
TINY_TM = {"iterations": 4, "syn_steps": 2, "expert_epochs": 1, "cur_max_start_epoch": 1, "max_start_epoch": 1,
           "checkpoint_every": 0}  # fmt: skip
TINY_EXPERTS = {"num": 1, "augment": "none"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("edf-cache"))  # experts trained once for the module


def edf_run(cache, **edf):
    config = {"dataset": "digits", "ipc": 1, "workers": 0, "distill": "tm", "cache_dir": cache, "eval": TINY_EVAL,
              "experts": TINY_EXPERTS, "tm": TINY_TM, "plugin": {"edf": {"interval": 2, "alpha": 0.25, **edf}}}  # fmt: skip
    return ddcore.run(config, ["edf"], write=False)


@pytest.mark.slow
def test_edf_weights_the_built_in_matcher(cache):
    result = edf_run(cache)
    assert result.metrics["edf/cam_refreshes"] == 2  # iterations 0 and 2 of 4
    assert 0.0 < result.metrics["edf/active_fraction"] < 1.0
    calls = result.manifest["hook_calls"]
    assert calls["dd_pixel_weights"]["edf"]["calls"] == 4 and calls["dd_supervision_weights"]["edf"]["calls"] == 4
    record = result.manifest["records"]["edf"]
    assert record["options"]["preset"] == "ipc1" and record["cam"]["layer"] == "features.2.2"
    assert record["cam"]["class_index"] == list(range(10))
    again = edf_run(cache)
    assert torch.equal(result.distilled.images, again.distilled.images)  # one seed, one result
    plain = edf_run(cache, dae=False, cpd=False)
    assert not torch.equal(result.distilled.images, plain.distilled.images)  # the weights changed the updates


@pytest.mark.slow
def test_cli_refuses_edf_without_matching(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ddcore_cli", "run", "--plugin", "edf", "--ipc", "1", "--eval-runs", "0",
         "--set", f"cache_dir={tmp_path}", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: plugin 'edf' answers dd_pixel_weights, dd_supervision_weights, which distiller 'none' never calls; "
        "distillers that call them: tm (option --distill)"
    )
