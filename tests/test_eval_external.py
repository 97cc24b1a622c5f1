"""``dd eval --distilled``: sets made elsewhere (tensor files, ImageFolders of PNGs) measured under ddcore's protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core_support import assert_cli_error
from ddcore.data.base import DatasetOptions, denormalize
from ddcore.distilled import DistilledSet

EVAL = ("--eval-runs", "1", "--eval-epochs", "1", "--workers", "0")


@pytest.fixture(scope="module")
def digits():
    from ddcore.data.digits import load_digits_dataset

    return load_digits_dataset(DatasetOptions())


def real_set(digits, per_class: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` training images of each digit: ``([10*per_class, 1, 32, 32] normalised, [10*per_class])``."""
    indices = [i for group in digits.indices_by_class("train") for i in group[:per_class]]
    return digits.load("train", indices)


def external_args(tmp_path: Path, path: Path, *extra) -> list:
    return ["eval", "--distilled", path, "--dataset", "digits", "--out", tmp_path / "ext",
            "--cache-dir", tmp_path / "cache", *EVAL, "-q", *extra]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("labels", ["hard", "soft"])
def test_round_trip_gives_the_same_accuracies(cli, tiny_run_args, tmp_path, labels):
    """run -> dd export --format pt -> dd eval --distilled == dd eval RUN_DIR, network for network (same seed)."""
    run = tmp_path / "run"
    assert cli(*tiny_run_args("--ipc", "2", "--seed", "3", "-q"))[0] == 0
    saved = DistilledSet.load(run / "distilled.pt")
    saved.lr = 0.02  # a learned lr, as trajectory matching leaves: it must travel through lr.pt
    if labels == "soft":
        saved.labels = torch.nn.functional.one_hot(saved.labels, 10).float() * 4.0
    saved.save(run / "distilled.pt")
    assert cli("export", run, "--format", "pt", "--out", tmp_path / "exp")[0] == 0
    protocol = ("--eval-runs", "2", "--eval-epochs", "30", "--workers", "0")
    code, _, err = cli("eval", run, *protocol, "-q")
    assert code == 0, err
    [again] = run.glob("eval-*.json")
    expected = json.loads(again.read_text())["metrics"]
    code, out, err = cli("eval", "--distilled", tmp_path / "exp", "--dataset", "digits", "--seed", "3", *protocol,
                         "--out", tmp_path / "ext", "--cache-dir", tmp_path / "cache", "-q")  # fmt: skip
    assert code == 0, err
    metrics = json.loads((tmp_path / "ext" / "metrics.json").read_text())["metrics"]
    assert metrics["eval/acc_runs"] == expected["eval/acc_runs"]  # exactly, on the CPU
    assert metrics["eval/acc_mean"] == expected["eval/acc_mean"]
    assert max(metrics["eval/acc_runs"]) > 10.0  # trained past chance: the equality means something
    manifest = json.loads((tmp_path / "ext" / "manifest.json").read_text())
    record = manifest["records"]["external"]
    assert record["lr"] == 0.02 and record["labels"] == labels and record["converted"] is False
    assert manifest["records"]["eval"]["use_learned_lr"] is True
    assert "learned lr from the set: 0.02" in out


def test_a_tensor_file_in_mtt_style(cli, digits, tmp_path):
    images, labels = real_set(digits)
    torch.save({"image_syn": images, "label_syn": labels, "syn_lr": torch.tensor(0.01)}, tmp_path / "set.pt")
    code, out, err = cli(*external_args(tmp_path, tmp_path / "set.pt"))
    assert code == 0, err
    ext = tmp_path / "ext"
    assert {"manifest.json", "metrics.json", "distilled.pt", "grid.png", "run.log"} <= {p.name for p in ext.iterdir()}
    saved = DistilledSet.load(ext / "distilled.pt")
    assert torch.equal(saved.images, images) and torch.equal(saved.labels, labels) and saved.lr == pytest.approx(0.01)
    manifest = json.loads((ext / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["ipc"] == 2 and manifest["config"]["distill"] == "none"
    assert manifest["records"]["external"]["layout"] == "tensor-file"
    assert manifest["name"] == "external-digits-ipc2" and len(manifest["records"]["external"]["content_sha256"]) == 64
    assert manifest["records"]["external"]["assumed"] == "normalised with the dataset's mean/std (taken as saved)"
    assert len(json.loads((ext / "metrics.json").read_text())["metrics"]["eval/acc_runs"]) == 1
    assert "kept as saved" in out
    # the run it made is a run like any other: dd eval RUN_DIR re-evaluates it
    assert cli("eval", ext, *EVAL, "-q")[0] == 0


def test_pixel_values_are_normalised_with_the_dataset(cli, digits, tmp_path):
    images, labels = real_set(digits)
    pixels = digits.denormalize(images)
    torch.save((pixels, labels), tmp_path / "set.pt")
    code, out, err = cli(*external_args(tmp_path, tmp_path / "set.pt", "--input-range", "01"))
    assert code == 0, err
    saved = DistilledSet.load(tmp_path / "ext" / "distilled.pt")
    torch.testing.assert_close(saved.images, (pixels - digits.mean[0]) / digits.std[0])
    assert json.loads((tmp_path / "ext" / "manifest.json").read_text())["records"]["external"]["input"] == "01"
    assert "pixel values in [0, 1]" in out


def test_pixel_values_taken_as_normalised_get_a_hint(cli, digits, tmp_path):
    images, labels = real_set(digits)
    torch.save({"images": digits.denormalize(images).clamp(0, 1), "labels": labels}, tmp_path / "set.pt")
    code, out, err = cli(*external_args(tmp_path, tmp_path / "set.pt"))
    assert code == 0, err
    assert "if these are pixel values, pass --input-range 01" in out


@pytest.mark.parametrize("folders", ["names", "index"])
def test_an_imagefolder_of_pngs(cli, digits, tmp_path, folders):
    images, labels = real_set(digits)
    pixels = (digits.denormalize(images).clamp(0, 1) * 255).round().to(torch.uint8)
    root = tmp_path / "rded"
    for i, (image, label) in enumerate(zip(pixels, labels.tolist())):
        folder = root / (digits.class_names[label] if folders == "names" else f"{label:05d}")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(folder / f"img{i:03d}.png")
    (root / "0" if folders == "names" else root / "00000").joinpath(".DS_Store").write_bytes(b"x")  # skipped
    code, out, err = cli(*external_args(tmp_path, root))
    assert code == 0, err
    saved = DistilledSet.load(tmp_path / "ext" / "distilled.pt")
    assert torch.equal(saved.labels, labels)  # class-major, files in name order
    torch.testing.assert_close(saved.images, (pixels.float() / 255 - digits.mean[0]) / digits.std[0])
    record = json.loads((tmp_path / "ext" / "manifest.json").read_text())["records"]["external"]
    assert record["layout"] == "imagefolder" and record["class_folders"] == folders and record["files"] == 20
    assert record["class_order"].startswith("by name" if folders == "names" else "by index")


def test_class_names_in_another_order_are_relabelled(cli, tiny_run_args, tmp_path):
    assert cli(*tiny_run_args("--ipc", "1", "-q"))[0] == 0
    exp = tmp_path / "exp"
    assert cli("export", tmp_path / "run", "--format", "pt", "--out", exp)[0] == 0
    saved = DistilledSet.load(tmp_path / "run" / "distilled.pt")
    meta = json.loads((exp / "meta.json").read_text())
    meta["class_names"] = meta["class_names"][::-1]  # the same set, written by a tool that lists classes 9..0
    (exp / "meta.json").write_text(json.dumps(meta))
    torch.save(9 - saved.labels, exp / "labels.pt")
    code, _, err = cli(*external_args(tmp_path, exp))
    assert code == 0, err
    assert torch.equal(DistilledSet.load(tmp_path / "ext" / "distilled.pt").labels, saved.labels)


def test_mismatches_are_refused_before_anything_is_written(cli, digits, tmp_path):
    images, labels = real_set(digits)
    out = tmp_path / "ext"
    torch.save({"images": images[:10], "labels": torch.arange(5).repeat(2)}, tmp_path / "five.pt")
    assert_cli_error(cli(*external_args(tmp_path, tmp_path / "five.pt")), "has 5 classes", "'digits' has 10", "--dataset")
    torch.save({"images": images.repeat(1, 3, 1, 1), "labels": labels}, tmp_path / "rgb.pt")
    assert_cli_error(cli(*external_args(tmp_path, tmp_path / "rgb.pt")), "3-channel", "1-channel", "--dataset")
    torch.save({"images": images[:, :, :16, :16], "labels": labels}, tmp_path / "small.pt")
    assert_cli_error(cli(*external_args(tmp_path, tmp_path / "small.pt")), "16x16 px", "32x32 px", "--image-size")
    root = tmp_path / "colour"
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8), mode="RGB").save(root / str(c) / "a.png")
    assert_cli_error(cli(*external_args(tmp_path, root)), "3-channel", "1-channel")
    for c in range(3):
        (tmp_path / "three" / f"{c:05d}").mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32), dtype=np.uint8), mode="L").save(tmp_path / "three" / f"{c:05d}" / "a.png")
    assert_cli_error(cli(*external_args(tmp_path, tmp_path / "three")), "has 3 classes (its class folders)")
    torch.save({"pictures": images}, tmp_path / "odd.pt")
    assert_cli_error(cli(*external_args(tmp_path, tmp_path / "odd.pt")), "--distilled", "without images")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    assert_cli_error(cli(*external_args(tmp_path, tmp_path / "junk.pt")), "--distilled", "not a readable tensor file")
    assert_cli_error(cli(*external_args(tmp_path, tmp_path / "missing")), "--distilled", "no such file")
    assert not out.exists()


def test_eval_option_combinations(cli, digits, tmp_path):
    images, labels = real_set(digits)
    torch.save({"images": images, "labels": labels}, tmp_path / "set.pt")
    assert_cli_error(cli("eval", tmp_path / "run", "--distilled", tmp_path / "set.pt", "--dataset", "digits"), "not both")
    assert_cli_error(cli("eval", "--distilled", tmp_path / "set.pt"), "--distilled needs --dataset")
    assert_cli_error(cli("eval"), "missing RUN_DIR")
    assert_cli_error(cli("eval", tmp_path / "run", "--dataset", "digits"), "--dataset only go with --distilled")
    assert not (tmp_path / "ext").exists()


def test_a_ddcore_run_directory_or_its_png_export(cli, tiny_run_args, tmp_path):
    assert cli(*tiny_run_args("--ipc", "1", "-q"))[0] == 0
    saved = DistilledSet.load(tmp_path / "run" / "distilled.pt")
    code, _, err = cli(*external_args(tmp_path, tmp_path / "run"))
    assert code == 0, err
    assert torch.equal(DistilledSet.load(tmp_path / "ext" / "distilled.pt").images, saved.images)
    assert cli("export", tmp_path / "run", "--format", "imagefolder", "--class-folders", "index", "--out", tmp_path / "png")[0] == 0
    code, _, err = cli(*external_args(tmp_path, tmp_path / "png", "--overwrite"))
    assert code == 0, err
    back = DistilledSet.load(tmp_path / "ext" / "distilled.pt")
    pixels = denormalize(saved.images, saved.mean, saved.std).clamp(0, 1)
    assert torch.equal(back.labels, saved.labels)
    torch.testing.assert_close(denormalize(back.images, back.mean, back.std), (pixels * 255).round() / 255, atol=1e-5, rtol=0)
