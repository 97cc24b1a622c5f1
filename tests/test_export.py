"""``dd export``: plain tensors, PNG folders and a DD-Ranking config from a run, with meta.json; atomic, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core_support import assert_cli_error, tree_snapshot
from ddcore.data.base import denormalize
from ddcore.distilled import DistilledSet


@pytest.fixture
def tiny_run(cli, tiny_run_args, tmp_path) -> Path:
    """A digits run at IPC 2 (20 images, evaluation off)."""
    code, _, err = cli(*tiny_run_args("--ipc", "2", "-q"))
    assert code == 0, err
    return tmp_path / "run"


def rewrite_set(run: Path, **changes) -> DistilledSet:
    """Change the run's saved set (e.g. give it a learned lr or soft labels) and return it."""
    saved = DistilledSet.load(run / "distilled.pt")
    for key, value in changes.items():
        setattr(saved, key, value)
    saved.validate()
    saved.save(run / "distilled.pt")
    return saved


def test_pt_export_is_plain_tensors_with_meta(cli, tiny_run, tmp_path):
    saved = rewrite_set(tiny_run, lr=0.0173)
    out = tmp_path / "exp"
    code, stdout, err = cli("export", tiny_run, "--format", "pt", "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["images.pt", "labels.pt", "lr.pt", "meta.json"]
    images = torch.load(out / "images.pt", weights_only=True)
    labels = torch.load(out / "labels.pt", weights_only=True)
    lr = torch.load(out / "lr.pt", weights_only=True)
    assert images.dtype == torch.float32 and images.shape == (20, 1, 32, 32)
    assert torch.equal(images, saved.images)  # bit for bit: no re-normalisation asked
    assert labels.dtype == torch.int64 and torch.equal(labels, saved.labels)
    assert lr.dtype == torch.float64 and lr.ndim == 0 and lr.item() == 0.0173
    meta = json.loads((out / "meta.json").read_text())
    assert meta["class_names"] == [str(d) for d in range(10)] and meta["labels"] == "hard"
    assert meta["mean"] == list(saved.mean) and meta["std"] == list(saved.std)
    assert meta["image_shape"] == [1, 32, 32] and meta["lr"] == 0.0173 and meta["dataset"] == "digits"
    assert meta["accuracies"]["metrics"] == json.loads((tiny_run / "metrics.json").read_text())["metrics"]
    assert meta["eval_protocol"]["config"]["runs"] == 0
    assert "learned lr (lr.pt): 0.0173" in stdout
    assert not list(tmp_path.glob(".exp.*"))  # no temporary folder left next to it


def test_pt_export_renormalises_and_repeats_grey(cli, tiny_run, tmp_path):
    saved = DistilledSet.load(tiny_run / "distilled.pt")
    out = tmp_path / "exp"
    code, _, err = cli("export", tiny_run, "--format", "pt", "--out", out, "--rgb", "--mean", "0.5", "--std", "0.25,0.5,1")
    assert code == 0, err
    images = torch.load(out / "images.pt", weights_only=True)
    pixels = denormalize(saved.images, saved.mean, saved.std)[:, 0]
    assert images.shape == (20, 3, 32, 32)
    for channel, std in enumerate((0.25, 0.5, 1.0)):
        torch.testing.assert_close(images[:, channel], (pixels - 0.5) / std)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["mean"] == [0.5, 0.5, 0.5] and meta["std"] == [0.25, 0.5, 1.0] and meta["rgb_from_grey"] is True
    assert meta["image_shape"] == [3, 32, 32]


def test_soft_labels_are_exported_as_logits(cli, tiny_run, tmp_path):
    logits = torch.randn(20, 10, generator=torch.Generator().manual_seed(1))
    rewrite_set(tiny_run, labels=logits)
    out = tmp_path / "exp"
    assert cli("export", tiny_run, "--format", "pt", "--out", out)[0] == 0
    labels = torch.load(out / "labels.pt", weights_only=True)
    assert labels.dtype == torch.float32 and torch.equal(labels, logits)
    assert json.loads((out / "meta.json").read_text())["labels"] == "soft"


def test_imagefolder_pngs_names_and_clipped_count(cli, tiny_run, tmp_path):
    saved = DistilledSet.load(tiny_run / "distilled.pt")
    pixels = denormalize(saved.images, saved.mean, saved.std).clamp(0, 1)
    pixels[0, 0, 0, :5] = 1.5  # 5 values above 1
    pixels[3, 0, 2, :3] = -0.25  # 3 values below 0
    mean, std = torch.tensor(saved.mean).view(1, -1, 1, 1), torch.tensor(saved.std).view(1, -1, 1, 1)
    rewrite_set(tiny_run, images=(pixels - mean) / std)
    out = tmp_path / "pngs"
    code, stdout, err = cli("export", tiny_run, "--format", "imagefolder", "--out", out)
    assert code == 0, err
    pngs = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    labels = saved.labels.tolist()
    expected = sorted(f"{c}/{j:05d}.png" for c in range(10) for j in range(labels.count(c)))
    assert pngs == expected and len(pngs) == 20
    meta = json.loads((out / "meta.json").read_text())
    assert meta["clipped"]["above_1"] == 5 and meta["clipped"]["below_0"] == 3 and meta["clipped"]["clipped"] == 8
    assert meta["clipped"]["values"] == 20 * 32 * 32
    assert "clipped to [0, 1]: 8 of 20480 pixel values (3 below 0, 5 above 1)" in stdout
    first = f"{labels[0]}/00000.png"  # image 0 is the first of its class
    array = torch.tensor(np.asarray(Image.open(out / first)))
    assert Image.open(out / first).mode == "L" and array.shape == (32, 32)
    assert array[0, :5].tolist() == [255] * 5
    expected_row = (pixels[0, 0, 1] * 255).round().to(torch.uint8)
    assert torch.equal(array[1], expected_row)  # de-normalised, 8 bits


def test_imagefolder_index_folders(cli, tiny_run, tmp_path):
    out = tmp_path / "pngs"
    assert cli("export", tiny_run, "--format", "imagefolder", "--class-folders", "index", "--out", out)[0] == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"{c:05d}" for c in range(10)]
    assert json.loads((out / "meta.json").read_text())["class_folders"] == "index"


def test_ddranking_config_is_yaml_with_the_nearest_protocol(cli, tiny_run, tmp_path):
    yaml = pytest.importorskip("yaml")
    out = tmp_path / "ddr"
    code, stdout, err = cli("export", tiny_run, "--format", "ddranking", "--out", out)
    assert code == 0, err
    config = yaml.safe_load((out / "ddranking.yaml").read_text())
    assert config["ipc"] == 2 and config["im_size"] == [32, 32] and config["model_name"] == "ConvNet-3"
    assert config["optimizer"] == "sgd" and config["momentum"] == 0.9 and config["weight_decay"] == 0.0005
    assert config["lr_scheduler"] == "step" and config["step_size"] == config["num_epochs"] // 2
    meta = json.loads((out / "meta.json").read_text())
    differences = meta["ddranking"]["differences"]
    assert any("not one of DD-Ranking's built-ins" in d for d in differences)
    assert any("width" in d and "32" in d for d in differences)  # digits' evaluator is narrower
    assert (out / "images.pt").is_file() and "DD-Ranking config differs" in stdout


def test_refusals_write_nothing(cli, tiny_run, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    before = tree_snapshot(busy)
    assert_cli_error(cli("export", tiny_run, "--format", "pt", "--out", busy), "--out", "not empty", "--overwrite")
    assert_cli_error(cli("export", tiny_run, "--format", "pt", "--out", busy, "--overwrite"), "holds no ddcore export")
    assert tree_snapshot(busy) == before
    fresh = tmp_path / "fresh"
    assert_cli_error(cli("export", tiny_run, "--format", "imagefolder", "--out", fresh, "--mean", "0.5", "--std", "0.2"), "--mean/--std")
    assert_cli_error(cli("export", tiny_run, "--format", "pt", "--out", fresh, "--mean", "0.5,0.5", "--std", "0.2,0.2"), "--mean needs 1")
    assert_cli_error(cli("export", tiny_run, "--format", "pt", "--out", fresh, "--mean", "0.5", "--std", "0"), "--std", "above 0")
    assert_cli_error(cli("export", tiny_run, "--format", "pt", "--out", fresh, "--mean", "0.5"), "together")
    assert_cli_error(cli("export", tiny_run, "--format", "pt", "--out", fresh, "--class-folders", "index"), "--class-folders")
    assert_cli_error(cli("export", tmp_path / "nothing", "--format", "pt", "--out", fresh), "RUN_DIR")
    assert not fresh.exists()


def test_overwrite_replaces_an_earlier_export(cli, tiny_run, tmp_path):
    out = tmp_path / "exp"
    assert cli("export", tiny_run, "--format", "imagefolder", "--out", out)[0] == 0
    assert cli("export", tiny_run, "--format", "pt", "--out", out, "--overwrite")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["images.pt", "labels.pt", "meta.json"]
    assert not list(tmp_path.glob(".exp.*"))


def test_a_failed_export_leaves_nothing(cli, tiny_run, tmp_path, monkeypatch):
    import ddcore.export

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ddcore.export, "write_pngs", broken)
    out = tmp_path / "pngs"
    code, _, err = cli("export", tiny_run, "--format", "imagefolder", "--out", out)
    assert code == 2 and "no space left" in err.lower() and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".pngs.*"))


def test_a_whitened_set_leaves_only_as_tensors(cli, tiny_run, tmp_path):
    saved = DistilledSet.load(tiny_run / "distilled.pt")
    zca = {"method": "zca", "eps": 0.1}
    rewrite_set(tiny_run, data={**saved.data, "whitening": zca})  # as a run on ZCA-whitened data records it
    assert_cli_error(cli("export", tiny_run, "--format", "imagefolder", "--out", tmp_path / "png"), "ZCA-whitened", "--format pt")
    assert_cli_error(cli("export", tiny_run, "--format", "pt", "--rgb", "--out", tmp_path / "png"), "ZCA-whitened", "--rgb")
    assert not (tmp_path / "png").exists()
    assert cli("export", tiny_run, "--format", "pt", "--out", tmp_path / "exp")[0] == 0
    assert json.loads((tmp_path / "exp" / "meta.json").read_text())["whitening"] == zca
    # evaluated only on data whitened the same way
    result = cli("eval", "--distilled", tmp_path / "exp", "--dataset", "digits", "--out", tmp_path / "ext",
                 "--cache-dir", tmp_path / "cache", "--eval-runs", "1", "--eval-epochs", "1")  # fmt: skip
    assert_cli_error(result, "ZCA-whitened", "not whitened")
    assert not (tmp_path / "ext").exists()
