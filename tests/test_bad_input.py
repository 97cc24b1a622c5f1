"""Bad input through the ``dd`` command: one ``Error: ...`` line naming what to fix, exit status 2,
no traceback, and nothing written (or overwritten) for a run that cannot start."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core_support import assert_cli_error, tree_snapshot


@pytest.fixture(scope="session")
def complete_run(tmp_path_factory) -> Path:
    """A finished run directory (digits, ipc 1, evaluation off); copy it before changing anything."""
    import ddcore

    base = tmp_path_factory.mktemp("complete")
    out = base / "run"
    ddcore.run({"ipc": 1, "workers": 0, "eval": {"runs": 0}, "out": str(out), "cache_dir": str(base / "cache")})
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    return out


@pytest.fixture
def run_copy(complete_run, tmp_path) -> Path:
    target = tmp_path / "copied-run"
    shutil.copytree(complete_run, target)
    return target


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------


def test_unknown_dataset_lists_the_available_ones(cli, tiny_run_args, tmp_path):
    assert_cli_error(
        cli(*tiny_run_args("--dataset", "digitz")),
        'unknown dataset "digitz"',
        "--dataset",
        'Did you mean "digits"?',
        "Available: cifar10, cifar100, digits, fashion-mnist, imagefolder, imagenette",
    )
    assert not (tmp_path / "run").exists()


def test_imagefolder_without_data_root(cli, tiny_run_args, tmp_path):
    assert_cli_error(cli(*tiny_run_args("--dataset", "imagefolder")), "imagefolder", "needs a folder of images", "--data-root")
    assert not (tmp_path / "run").exists()


def test_imagefolder_with_an_empty_folder(cli, tiny_run_args, tmp_path):
    empty = tmp_path / "images"
    empty.mkdir()
    assert_cli_error(
        cli(*tiny_run_args("--dataset", "imagefolder", "--data-root", empty)), str(empty), "no train/ folder", "--data-root"
    )
    assert not (tmp_path / "run").exists()
    assert list(empty.iterdir()) == []


def test_imagefolder_with_a_missing_folder(cli, tiny_run_args, tmp_path):
    missing = tmp_path / "nowhere"
    assert_cli_error(
        cli(*tiny_run_args("--dataset", "imagefolder", "--data-root", missing)), str(missing), "does not exist", "--data-root"
    )


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_file_that_is_not_toml(cli, tiny_run_args, tmp_path):
    config = write_config(tmp_path, 'ipc = 1\n[eval\nruns = 0\n')
    assert_cli_error(cli(*tiny_run_args("--config", config)), str(config), "not valid TOML", "line 2", "--config")
    assert not (tmp_path / "run").exists()


def test_missing_config_file(cli, tiny_run_args, tmp_path):
    missing = tmp_path / "missing.toml"
    assert_cli_error(cli(*tiny_run_args("--config", missing)), str(missing), "does not exist", "--config")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "text, key, suggestion",
    [
        ("ipcc = 3\n", "'ipcc'", "did you mean 'ipc'?"),
        ("[eval]\nepoch = 3\n", "'eval.epoch'", "did you mean 'eval.epochs'?"),
        ("datset = 'digits'\n", "'datset'", "did you mean 'dataset'?"),
    ],
)
def test_unknown_config_key_suggests_the_right_one(cli, tiny_run_args, tmp_path, text, key, suggestion):
    config = write_config(tmp_path, text)
    assert_cli_error(cli(*tiny_run_args("--config", config)), f"unknown config key {key}", suggestion)
    assert not (tmp_path / "run").exists()


def test_unknown_key_from_set(cli, tiny_run_args):
    assert_cli_error(
        cli(*tiny_run_args("--set", "eval.widht=8")), "unknown config key 'eval.widht'", "did you mean 'eval.width'?"
    )


def test_set_without_a_value(cli, tiny_run_args):
    assert_cli_error(cli(*tiny_run_args("--set", "ipc")), "--set 'ipc'", "KEY=VALUE")


def test_wrong_type_in_the_config_file(cli, tiny_run_args, tmp_path):
    config = write_config(tmp_path, 'ipc = "ten"\n')
    # the file's ipc must win over nothing: build the flags without --ipc
    args = [a for a in tiny_run_args("--config", config)]
    i = args.index("--ipc")
    del args[i : i + 2]
    assert_cli_error(cli(*args), "config key 'ipc'", "expected an integer", "'ten'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ('[eval]\nlr = "fast"\n', "'eval.lr'", "expected a number"),
        ("[eval]\nschedule = \"linear\"\n", "'eval.schedule'", "expected one of 'step', 'cosine', 'constant'"),
        ("seed = 1.5\n", "'seed'", "expected an integer"),
        ("plugins = 3\n", "'plugins'", "expected a list"),
        ("cpu = \"yes\"\n", "'cpu'", "expected true or false"),
    ],
)
def test_other_wrong_types(cli, tiny_run_args, tmp_path, text, key, expected):
    assert_cli_error(cli(*tiny_run_args("--config", write_config(tmp_path, text))), f"config key {key}", expected)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("ipc", ["0", "-3"])
def test_ipc_must_be_positive(cli, tiny_run_args, tmp_path, ipc):
    args = tiny_run_args()
    args[args.index("--ipc") + 1] = ipc
    assert_cli_error(cli(*args), "config key 'ipc'", "at least 1", f"got {ipc}", "--ipc")
    assert not (tmp_path / "run").exists()


def test_ipc_larger_than_a_class(cli, tiny_run_args, tmp_path):
    args = tiny_run_args()
    args[args.index("--ipc") + 1] = "500"

    line = assert_cli_error(cli(*args), "ipc 500 exceeds the", "training images of class", "digits", "--ipc")

    assert 100 < int(line.split("exceeds the ")[1].split()[0]) < 500
    assert not (tmp_path / "run").exists()  # no half-written run directory


def test_ipc_larger_than_a_class_leaves_an_existing_empty_out_empty(cli, tiny_run_args, tmp_path):
    out = tmp_path / "empty-out"
    out.mkdir()
    args = tiny_run_args(out=out)
    args[args.index("--ipc") + 1] = "500"

    assert_cli_error(cli(*args), "ipc 500", "--ipc")
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# The output directory
# ----------------------------------------------------------------------------------------------


def test_out_under_a_regular_file(cli, tiny_run_args, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me\n")
    out = blocker / "run"

    assert_cli_error(cli(*tiny_run_args(out=out)), f"--out {out}", "not writable")
    assert blocker.read_text() == "keep me\n"


def test_out_is_a_file(cli, tiny_run_args, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me\n")

    assert_cli_error(cli(*tiny_run_args(out=blocker)), f"--out {blocker}", "is a file")
    assert blocker.read_text() == "keep me\n"


def test_out_already_holding_a_run(cli, tiny_run_args, run_copy):
    before = tree_snapshot(run_copy)
    assert {"manifest.json", "distilled.pt", "metrics.json", "grid.png", "run.log"} <= set(before)

    assert_cli_error(cli(*tiny_run_args(out=run_copy)), f"--out {run_copy}", "already holds a run", "--overwrite")

    assert tree_snapshot(run_copy) == before


# ----------------------------------------------------------------------------------------------
# dd show / dd eval on broken run directories
# ----------------------------------------------------------------------------------------------


def test_show_and_eval_work_on_a_good_run(cli, run_copy):
    code, out, err = cli("show", run_copy, "--json")
    assert code == 0, err
    assert json.loads(out)["manifest"]["status"] == "complete"

    code, out, err = cli("eval", run_copy, "--eval-runs", "0")
    assert code == 0, err
    assert len(list(run_copy.glob("eval-*.json"))) == 1


def test_show_missing_dir(cli, tmp_path):
    missing = tmp_path / "no-such-run"
    assert_cli_error(cli("show", missing), str(missing / "manifest.json"), "does not exist", "run directory")


def test_eval_missing_dir(cli, tmp_path):
    missing = tmp_path / "no-such-run"
    assert_cli_error(cli("eval", missing), str(missing), "not a directory", "RUN_DIR")
    assert not missing.exists()


@pytest.mark.parametrize("command", ["show", "eval"])
@pytest.mark.parametrize(
    "content, problem",
    [('{"format": 1, "status": "compl', "not a readable run manifest"), ("[1, 2, 3]", "expected a JSON object"), (b"\xff\xfe\x00", "not a readable run manifest")],
    ids=["truncated", "not-an-object", "binary"],
)
def test_corrupt_manifest(cli, run_copy, command, content, problem):
    manifest = run_copy / "manifest.json"
    manifest.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = tree_snapshot(run_copy)

    assert_cli_error(cli(command, run_copy), str(manifest), problem)
    assert tree_snapshot(run_copy) == before  # no eval-*.json written


def test_show_with_a_corrupt_metrics_file(cli, run_copy):
    (run_copy / "metrics.json").write_text("{not json")
    assert_cli_error(cli("show", run_copy), str(run_copy / "metrics.json"), "not a readable metrics file")


def test_show_does_not_need_distilled_pt(cli, run_copy):
    (run_copy / "distilled.pt").write_bytes(b"garbage")
    code, out, err = cli("show", run_copy)
    assert code == 0, err
    assert "complete" in out


def test_eval_with_a_missing_distilled_set(cli, run_copy):
    (run_copy / "distilled.pt").unlink()
    before = tree_snapshot(run_copy)
    assert_cli_error(cli("eval", run_copy), str(run_copy / "distilled.pt"), "no such file")
    assert tree_snapshot(run_copy) == before


def test_eval_with_a_truncated_distilled_set(cli, run_copy):
    path = run_copy / "distilled.pt"
    path.write_bytes(path.read_bytes()[:200])
    before = tree_snapshot(run_copy)
    assert_cli_error(cli("eval", run_copy), str(path), "not a readable distilled set")
    assert tree_snapshot(run_copy) == before


def test_eval_with_a_foreign_torch_file(cli, run_copy):
    path = run_copy / "distilled.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    assert_cli_error(cli("eval", run_copy), str(path), "not a ddcore distilled set")


def test_eval_with_a_garbage_distilled_set(cli, run_copy):
    path = run_copy / "distilled.pt"
    path.write_bytes(b"garbage")
    assert_cli_error(cli("eval", run_copy), str(path), "not a readable distilled set")


@pytest.mark.parametrize("broken", ["missing-keys", "labels-out-of-range"])
def test_eval_with_an_inconsistent_distilled_set(cli, run_copy, broken):
    path = run_copy / "distilled.pt"
    data = torch.load(path, weights_only=True)
    if broken == "missing-keys":
        del data["labels"]
    else:
        data["labels"] = torch.full_like(data["labels"], 99)
    torch.save(data, path)

    try:
        result = cli("eval", run_copy)
    except Exception as exc:  # escapes main(): what the user sees is a traceback
        pytest.fail(f"raw {type(exc).__name__} escaped dd eval: {exc}")
    assert_cli_error(result, str(path))
