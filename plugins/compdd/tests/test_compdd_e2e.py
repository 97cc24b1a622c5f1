"""The plugin in whole runs: options, the protocol evaluator, dd run on the miniature and on a fake ImageNet."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from ddcore import ConfigError, DDError
from ddcore_compdd import plugin
from ddcore_compdd.commands import compdd_group

TINY_PROTOCOL = {"runs": 1, "epochs": 2, "width": 8}


def test_hooks_and_options_validate(dd_pm, run_tiny):
    pm = dd_pm([plugin])
    assert set(pm.infos["compdd"].hooks) == {"dd_register_datasets", "dd_evaluate", "dd_register_commands"}
    with pytest.raises(ConfigError, match="plugin.compdd.runs"):
        run_tiny(plugins=[plugin], plugin={"compdd": {"runs": 0}})


def test_protocol_abstains_on_other_datasets_unless_asked(run_tiny):
    assert not any(key.startswith("compdd/") for key in run_tiny(plugins=[plugin]).metrics)
    result = run_tiny(plugins=[plugin], eval={"runs": 0}, plugin={"compdd": {**TINY_PROTOCOL, "evaluate": "on"}})
    # one network: its std is undefined and left out (issue 16: no "± 0.00" for a single value)
    assert set(result.metrics) == {"compdd/acc_mean", "compdd/acc_runs", "compdd/epochs"}
    settings = result.manifest["records"]["compdd/protocol"]
    assert settings["recipe"]["augment"] == "dsa" and settings["recipe"]["batch_size"] == 128
    assert settings["model"] == {"name": "convnet", "width": 8, "depth": 3, "norm": "instancenorm"}


@pytest.mark.slow
def test_run_and_report_on_a_fake_imagenet_subset(fake_imagenet, run_tiny, tmp_path):
    root = fake_imagenet(("bird-hard",), train=2, val=1)
    result = run_tiny(
        plugins=[plugin], write=True, dataset="compdd/bird-hard", data_root=str(root), image_size=32,
        eval={"runs": 0}, plugin={"compdd": TINY_PROTOCOL},
    )  # fmt: skip
    assert result.manifest["dataset"]["class_names"][0] == "indigo_bunting"
    assert len(result.metrics["compdd/acc_runs"]) == 1 and 0 <= result.metrics["compdd/acc_mean"] <= 100
    report = CliRunner().invoke(compdd_group, ["report", str(result.out_dir), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    assert "### compdd/bird" in report.output and "| random real | 1 | — |" in report.output


@pytest.mark.slow
def test_dd_run_trajectory_matching_on_mini_hard(tmp_path):
    from ddcore_cli.app import cli

    args = [
        "run", "--plugin", "compdd", "--dataset", "compdd/mini-hard", "--distill", "tm", "--ipc", "1",
        "--eval-runs", "0", "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
        "--quiet", "--json",
        "--set", "tm.preset=digits-ipc1", "--set", "tm.iterations=2", "--set", "tm.syn_steps=2",
        "--set", "tm.expert_epochs=1", "--set", "tm.min_start_epoch=0", "--set", "tm.cur_max_start_epoch=1",
        "--set", "tm.max_start_epoch=1", "--set", "experts.num=1", "--set", "eval.width=8",
        # a one-epoch width-8 expert gives a syn_lr gradient of ~1400: at the preset's lr_lr the learned lr would
        # turn negative in the first iteration, which the matcher refuses (a failed distillation, not a result)
        "--set", "tm.lr_lr=1e-7",
        "--set", "plugin.compdd.runs=1", "--set", "plugin.compdd.epochs=1", "--set", "plugin.compdd.width=8",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)["metrics"]
    assert metrics["compdd/epochs"] == 1 and len(metrics["compdd/acc_runs"]) == 1
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["dataset"]["name"] == "compdd/mini-hard" and manifest["status"] == "complete"


def test_complexity_command_with_a_torchvision_classifier_on_local_weights(tmp_path):
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(0)
        weights = torchvision.models.resnet18(num_classes=10).state_dict()
    torch.save(weights, tmp_path / "r18.pt")
    args = ["complexity", "--dataset", "compdd/mini-easy", "--arch", "resnet18", "--weights", str(tmp_path / "r18.pt"),
            "--per-class", "1", "--target", "label", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--workers", "0", "--cpu"]  # fmt: skip
    result = CliRunner().invoke(compdd_group, args)
    assert result.exit_code == 0, result.output
    (entry,) = json.loads((tmp_path / "out" / "complexity.json").read_text())["datasets"]
    assert entry["classifier"]["arch"] == "resnet18" and entry["options"]["target"] == "label"
    assert [row["images"] for row in entry["classes"]] == [1] * 10
    assert all(0 <= row["complexity"] <= 1 for row in entry["classes"])
    assert (tmp_path / "out" / "complexity.csv").read_text().startswith("dataset,label,class,images,complexity,std")
    half = CliRunner().invoke(compdd_group, args[:5] + args[7:])  # --arch without --weights
    assert isinstance(half.exception, DDError) and "--weights" in str(half.exception)
