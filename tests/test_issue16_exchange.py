"""Issue 16, sets in and out, as a new user tries them: other repositories' key names, refusals of sets that
cannot be meant for the dataset (a class without images, index folders past the class count, labels past it),
and an ``imagefolder`` export of a soft-labelled set read back with its logits, lr and empty class folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core_support import assert_cli_error
from ddcore.distilled import DistilledSet
from ddcore.external import read_external
from test_export import rewrite_set, tiny_run  # noqa: F401 - tiny_run is a fixture

ARGS = ("--eval-runs", "2", "--eval-epochs", "1", "--workers", "0", "-q")


def distilled_args(tmp_path, path, *extra):
    return ["eval", "--distilled", path, "--dataset", "digits", "--out", tmp_path / "ext",
            "--cache-dir", tmp_path / "cache", *ARGS, *extra]  # fmt: skip


def png_tree(root, folders, empty=()):
    """``root/<folder>/a.png`` (a 32x32 grey image, different per folder) for every folder not in ``empty``."""
    for k, name in enumerate(folders):
        (root / name).mkdir(parents=True)
        if name not in empty:
            Image.fromarray(np.full((32, 32), 20 * k, dtype=np.uint8), mode="L").save(root / name / "a.png")
    return root


@pytest.mark.parametrize("keys", [("images", "labels"), ("image_syn", "label_syn"), ("image", "label"), ("x", "y")])
def test_dict_key_names_of_other_repositories(tmp_path, keys):
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])
    torch.save({keys[0]: images, keys[1]: labels, "lr": 0.0125}, tmp_path / "set.pt")
    found = read_external(tmp_path / "set.pt")
    assert torch.equal(found.images, images) and torch.equal(found.labels, labels)
    assert found.lr == 0.0125  # a plain float lr is not rounded through float32


def test_labels_past_the_class_count_name_the_largest_label(cli, tmp_path):
    torch.save({"images": torch.randn(10, 1, 32, 32), "labels": torch.arange(10) + 5}, tmp_path / "set.pt")
    assert_cli_error(cli(*distilled_args(tmp_path, tmp_path / "set.pt")), "has 15 classes (hard labels up to 14)", "has 10")
    assert not (tmp_path / "ext").exists()


def test_a_class_without_images_is_refused(cli, tmp_path):
    labels = torch.tensor([0, 1, 2, 4, 5, 6, 7, 8, 9, 9])  # no 3
    torch.save({"images": torch.randn(10, 1, 32, 32), "labels": labels}, tmp_path / "set.pt")
    assert_cli_error(cli(*distilled_args(tmp_path, tmp_path / "set.pt")), "class 3 has no image")
    folders = [str(d) for d in range(10)]
    png_tree(tmp_path / "pngs", folders, empty=("7",))
    assert_cli_error(cli(*distilled_args(tmp_path, tmp_path / "pngs")), "class folder '7' has no image")
    assert not (tmp_path / "ext").exists()


def test_index_folders_past_the_class_count_are_named(cli, tmp_path):
    png_tree(tmp_path / "pngs", [f"{k:05d}" for k in range(9)] + ["00010"])  # ten folders, 00009 missing
    assert_cli_error(cli(*distilled_args(tmp_path, tmp_path / "pngs")), "class folder 00010 is label 10", "00000..00009")
    assert not (tmp_path / "ext").exists()


def test_export_under_a_file_is_refused(cli, tiny_run, tmp_path):  # noqa: F811
    (tmp_path / "afile").write_text("x")
    assert_cli_error(cli("export", tiny_run, "--format", "pt", "--out", tmp_path / "afile" / "sub"), "afile is a file")
    assert (tmp_path / "afile").read_text() == "x"


def test_soft_imagefolder_export_reads_back_with_its_logits_and_lr(cli, tiny_run, tmp_path):  # noqa: F811
    # 20 images whose logits' argmax never picks classes 3 and 7: those folders stay empty, and still exist
    logits = torch.randn(20, 10, generator=torch.Generator().manual_seed(0))
    logits[:, [3, 7]] -= 100.0
    saved = rewrite_set(tiny_run, labels=logits, lr=0.0125)
    out = tmp_path / "pngs"
    code, stdout, err = cli("export", tiny_run, "--format", "imagefolder", "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [str(d) for d in range(10)]
    assert not any((out / "3").iterdir()) and not any((out / "7").iterdir())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["empty_folders"] == ["3", "7"] and len(meta["labels_rows"]) == 20
    assert "learned lr (meta.json 'lr'): 0.0125" in stdout and "lr.pt" not in stdout and "3, 7" in stdout
    # labels.pt row k belongs to the PNG labels_rows[k]: that PNG is the image with that argmax
    rows = torch.load(out / "labels.pt", weights_only=True)
    for k, name in enumerate(meta["labels_rows"]):
        assert name.split("/")[0] == str(int(rows[k].argmax()))

    found = read_external(out)
    assert found.soft and found.lr == 0.0125 and found.class_names == [str(d) for d in range(10)]
    pixels = DistilledSet.load(tiny_run / "distilled.pt")
    # every image read back carries the logits of the saved image it was written from (matched by its pixels)
    from ddcore.data.base import denormalize

    written = (denormalize(pixels.images, pixels.mean, pixels.std).clamp(0, 1) * 255).round() / 255
    for image, label in zip(found.images, found.labels):
        match = [i for i in range(20) if torch.allclose(written[i], image, atol=1e-6)]
        assert match and any(torch.equal(label, saved.labels[i].float()) for i in match)


def test_rgb_imagefolder_export_of_a_grey_set_reads_back_grey(cli, tiny_run, tmp_path):  # noqa: F811
    from ddcore.data.base import DatasetOptions
    from ddcore.data.digits import load_digits_dataset
    from ddcore.external import to_distilled

    out = tmp_path / "pngs"
    assert cli("export", tiny_run, "--format", "imagefolder", "--rgb", "--out", out)[0] == 0
    found = read_external(out)
    assert found.images.shape[1] == 3 and found.rgb_from_grey
    distilled, record = to_distilled(found, load_digits_dataset(DatasetOptions()))
    saved = DistilledSet.load(tiny_run / "distilled.pt")
    assert distilled.images.shape == saved.images.shape  # [20, 1, 32, 32]
    # PNG rounding (8 bits) and clipping aside, the pixels are the saved ones
    from ddcore.data.base import denormalize

    mine = denormalize(distilled.images, distilled.mean, distilled.std)
    theirs = (denormalize(saved.images, saved.mean, saved.std).clamp(0, 1) * 255).round() / 255
    order = torch.argsort(saved.labels, stable=True)
    torch.testing.assert_close(mine, theirs[order], atol=1e-5, rtol=0)


def test_export_of_a_run_that_has_not_finished_says_so(cli, tiny_run, tmp_path):  # noqa: F811
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    manifest["status"] = "failed"  # e.g. its evaluation failed: the set is saved, the accuracies are not
    (tiny_run / "manifest.json").write_text(json.dumps(manifest))
    (tiny_run / "metrics.json").unlink()
    code, stdout, err = cli("export", tiny_run, "--format", "pt", "--out", tmp_path / "exp")
    assert code == 0, err
    meta = json.loads((tmp_path / "exp" / "meta.json").read_text())
    assert meta["run_status"] == "failed" and meta["accuracies"]["metrics"] is None
    assert "the run is 'failed', not complete" in stdout and "(none)" in stdout


def test_probabilities_given_as_soft_labels_are_refused(tmp_path):
    from ddcore.errors import ConfigError

    images = torch.randn(10, 1, 8, 8)
    probs = torch.randn(10, 10, generator=torch.Generator().manual_seed(2)).softmax(dim=1)
    torch.save({"images": images, "labels": probs}, tmp_path / "probs.pt")
    with pytest.raises(ConfigError, match="are probabilities .* torch.log"):
        read_external(tmp_path / "probs.pt")
    torch.save({"images": images, "labels": probs.log()}, tmp_path / "logits.pt")  # their log is accepted
    found = read_external(tmp_path / "logits.pt")
    torch.testing.assert_close(found.labels.softmax(dim=1), probs)


def test_uint8_images_are_never_taken_as_normalised(tmp_path):
    from ddcore.errors import ConfigError

    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    torch.save({"images": images, "labels": torch.arange(10)}, tmp_path / "u8.pt")
    assert read_external(tmp_path / "u8.pt").pixel_range == "255"  # read as pixel values without the option
    with pytest.raises(ConfigError, match="--input-range normalized, but the images are uint8"):
        read_external(tmp_path / "u8.pt", input_range="normalized")
