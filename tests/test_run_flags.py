"""dd run's flags map onto config keys; flags win over --set and the config file."""

from __future__ import annotations

from ddcore_cli.run_cmd import flag_overrides, merged_config


def test_flags_map_onto_config_keys():
    assert flag_overrides(distill="tm", eval_runs=2, ipc=None, baseline=("random",), cpu=True) == {
        "distill": "tm", "eval": {"runs": 2, "baseline": ["random"]}, "cpu": True,
    }  # fmt: skip


def test_precedence_file_then_set_then_flags(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('ipc = 3\nplugins = ["a"]\n[tm]\niterations = 9\n')
    merged = merged_config(config, ("b",), ("ipc=4", "tm.syn_steps=2"), ipc=5, distill="tm")
    assert merged["ipc"] == 5 and merged["distill"] == "tm" and merged["plugins"] == ["a", "b"]
    assert merged["tm"] == {"iterations": 9, "syn_steps": 2}
