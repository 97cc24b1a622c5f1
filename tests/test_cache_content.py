"""Caches miss when the data's content changes; saved state is checked against the data it meets.

Issue 13, kind 3 (`dd experts`, teachers: keyed on content, not names) and kind 2 (`dd eval RUN` after a
class folder was renamed, or with the classes listed in another order; `--resume` on changed data).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from ddcore import artifacts
from ddcore.data.base import ImageDataset, TensorSplit
from ddcore.datasig import data_signature
from ddcore.distilled import DistilledSet
from ddcore.errors import ConfigError
from ddcore.hookspecs import hookimpl
from ddcore.models import ModelSpec
from ddcore.testing import KNOWN_ANSWER_CLASSES, known_answer_images

COLOURS = {"bird": (220, 30, 30), "cat": (30, 220, 30), "dog": (30, 30, 220)}


def make_tree(root: Path, per_class: int = 3) -> Path:
    """root/{train,val}/{bird,cat,dog}/img<i>.png: noisy solid colours, 8x8, one class per colour."""
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                noise = torch.randint(-20, 21, (8, 8, 3), generator=generator)
                pixels = (torch.tensor(colour) + noise).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"img{i}.png")
    return root


def swap_pictures(root: Path, a: str, b: str) -> None:
    """Rewrite every training image of classes ``a`` and ``b`` with the other's bytes, under the same names."""
    time.sleep(0.05)  # past the file system's timestamp granularity
    for path_a in sorted((root / "train" / a).iterdir()):
        path_b = root / "train" / b / path_a.name
        data_a, data_b = path_a.read_bytes(), path_b.read_bytes()
        path_a.write_bytes(data_b)
        path_b.write_bytes(data_a)


# ----------------------------------------------------------------------------------------------
# Kind 3: caches keyed on content
# ----------------------------------------------------------------------------------------------


def test_dd_experts_trains_again_after_the_pictures_are_swapped(tmp_path):
    """The issue's input: `dd experts` on an imagefolder, swap two classes' pictures, `dd experts` again."""
    from click.testing import CliRunner

    from ddcore_cli.experts_cmd import experts_command

    root = make_tree(tmp_path / "data")
    window = ["--set", "tm.max_start_epoch=0", "--set", "tm.cur_max_start_epoch=0", "--set", "tm.expert_epochs=1"]
    args = ["--dataset", "imagefolder", "--data-root", str(root), "--image-size", "8", "--width", "4", "--ipc", "1",
            *window, "--num-experts", "1", "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--quiet", "--cpu"]  # fmt: skip
    runner = CliRunner()

    def experts() -> tuple[str, str]:
        result = runner.invoke(experts_command, args)
        assert result.exit_code == 0, result.output
        [line] = [line for line in result.output.splitlines() if "cache folder:" in line]
        return line, line.split("data fingerprint ")[1].split()[0]

    first, print_1 = experts()
    assert "(1 trained, 0 reused)" in first
    again, print_2 = experts()
    assert "(0 trained, 1 reused)" in again and print_2 == print_1  # nothing changed: reused
    swap_pictures(root, "bird", "cat")
    after, print_3 = experts()
    assert "(1 trained, 0 reused)" in after and print_3 != print_1
    folders = sorted(p.name for p in (tmp_path / "cache" / "experts").iterdir())
    assert len(folders) == 2
    recipes = [json.loads((tmp_path / "cache" / "experts" / f / "recipe.json").read_text()) for f in folders]
    assert sorted(r["dataset"]["fingerprint"] for r in recipes) == sorted([print_1, print_3])


TINY = ModelSpec(width=8, depth=3)


def test_teacher_is_trained_again_when_the_content_changes(dd_context, monkeypatch):
    from ddcore import teacher as teacher_module

    ctx = dd_context(image_size=8)
    calls: list[int] = []
    real_train = teacher_module.train_teacher
    monkeypatch.setattr(teacher_module, "train_teacher", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    teacher_module.trained_teacher(ctx, model=TINY, epochs=1)
    teacher_module.trained_teacher(ctx, model=TINY, epochs=1)
    assert calls == [1]
    [path] = (ctx.cache_dir / "teachers").glob("*.pt")
    assert torch.load(path, weights_only=True)["data"] == data_signature(ctx.dataset)
    images = ctx.dataset.train.images.clone()
    images[0, 0, 0, 0] += 1.0  # one pixel of one training image, same name, same size
    ctx.dataset.train = TensorSplit(images, ctx.dataset.train.labels)
    teacher_module.trained_teacher(ctx, model=TINY, epochs=1)
    assert calls == [1, 1] and len(list((ctx.cache_dir / "teachers").glob("*.pt"))) == 2


def test_a_teacher_file_recorded_for_other_classes_is_not_used(dd_context, monkeypatch):
    from ddcore import teacher as teacher_module

    ctx = dd_context(image_size=8)
    teacher_module.trained_teacher(ctx, model=TINY, epochs=1)
    [path] = (ctx.cache_dir / "teachers").glob("*.pt")
    data = torch.load(path, weights_only=True)
    data["data"]["class_names"] = list(reversed(data["data"]["class_names"]))  # as if written for other data
    torch.save(data, path)
    calls: list[int] = []
    real_train = teacher_module.train_teacher
    monkeypatch.setattr(teacher_module, "train_teacher", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    teacher_module.trained_teacher(ctx, model=TINY, epochs=1)
    assert calls == [1]
    assert torch.load(path, weights_only=True)["data"]["class_names"] == list(ctx.dataset.class_names)


# ----------------------------------------------------------------------------------------------
# Kind 2: `dd eval RUN` and `--resume` check the data
# ----------------------------------------------------------------------------------------------


def test_dd_eval_refuses_a_run_whose_class_folder_was_renamed(cli, tmp_path):
    """The issue's input: imagefolder run, rename a class folder in train/ and val/, `dd eval RUN`."""
    root = make_tree(tmp_path / "data")
    run_dir = tmp_path / "run"
    code, out, err = cli(
        "run", "--quiet", "--dataset", "imagefolder", "--data-root", root, "--image-size", "8", "--ipc", "1",
        "--eval-runs", "1", "--eval-epochs", "2", "--set", "eval.width=4", "--workers", "0", "--cpu",
        "--out", run_dir, "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = cli("eval", run_dir, "--quiet", "--cpu")
    assert code == 0, err
    [first] = run_dir.glob("eval-*.json")
    check = json.loads(first.read_text())["records"]["data_check"]
    assert check["class_remap"] is None and check["same_content"] is True
    first.unlink()
    copy = tmp_path / "moved"
    shutil.copytree(root, copy)  # `dd eval --data-root` where the data lives now: same classes, evaluated
    code, out, err = cli("eval", run_dir, "--quiet", "--cpu", "--data-root", copy)
    assert code == 0, err
    [moved] = run_dir.glob("eval-*.json")
    assert json.loads(moved.read_text())["records"]["data_check"]["same_content"] is False  # new files: noted
    moved.unlink()
    for split in ("train", "val"):  # sorted order bird, cat, dog -> cat, dog, zebra
        os.rename(root / split / "bird", root / split / "zebra")
    code, out, err = cli("eval", run_dir, "--quiet", "--cpu")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: the distilled set of run {run_dir} does not fit")
    assert "saved classes missing from the data: bird; data classes not in the saved set: zebra" in lines[0]
    assert "--data-root" in lines[0]
    assert not list(run_dir.glob("eval-*.json"))  # nothing written
    for split in ("train", "val"):
        os.rename(copy / split / "cat", copy / split / "Cat")
    code, out, err = cli("eval", run_dir, "--quiet", "--cpu", "--data-root", copy)
    assert code == 2 and "data classes not in the saved set: Cat" in err and len(err.strip().splitlines()) == 1


class OrderedBands:
    """Dataset ``ordered``: the known-answer bands, class names and label order read from ``<root>/order.txt``."""

    name = "ordered-bands"

    @hookimpl
    def dd_register_datasets(self, register):
        def factory(options):
            order = (Path(options.root) / "order.txt").read_text().split()
            position = torch.tensor([order.index(f"band{k}") for k in range(KNOWN_ANSWER_CLASSES)])
            train, train_bands = known_answer_images(16, 1)
            test, test_bands = known_answer_images(8, 2)
            return ImageDataset(
                name="ordered", class_names=order,
                train=TensorSplit(train, position[train_bands]), test=TensorSplit(test, position[test_bands]),
                image_shape=(1, 16, 16), mean=(0.0,), std=(1.0,), extra={"default_augment": "none"},
            )  # fmt: skip

        register("ordered", factory)


KA_EVAL = {"runs": 1, "epochs": 40, "width": 8, "batch_size": 16, "lr": 0.05}


def test_dd_eval_remaps_classes_listed_in_another_order(tmp_path):
    from ddcore.runner import evaluate_saved_run, run

    root = tmp_path / "data"
    root.mkdir()
    names = [f"band{k}" for k in range(KNOWN_ANSWER_CLASSES)]
    (root / "order.txt").write_text(" ".join(names))
    config = {"dataset": "ordered", "data_root": str(root), "ipc": 1, "workers": 0, "eval": KA_EVAL,
              "out": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    result = run(config, [OrderedBands()])
    assert result.metrics["eval/acc_runs"] == [100.0]
    (root / "order.txt").write_text(" ".join(reversed(names)))  # same classes, labels now reversed
    metrics, path = evaluate_saved_run(result.out_dir, {}, [OrderedBands()])
    assert metrics["eval/acc_runs"] == [100.0]  # unmapped, every image would train under another class's label
    check = json.loads(path.read_text())["records"]["data_check"]
    assert check["class_remap"] == {"from": names, "to": names[::-1], "perm": [3, 2, 1, 0]}
    recorded = DistilledSet.load(result.out_dir / artifacts.DISTILLED_FILE).data
    # the labels changed, so did the fingerprint (None: the set was saved without the run's signature)
    assert check["same_content"] is (False if recorded and recorded.get("fingerprint") else None)


def test_resume_refuses_saved_sets_of_reordered_classes(tmp_path):
    """`--resume` reloads saved sets and the distiller's opaque state: the data must be the same, order included."""
    from ddcore.errors import DDError
    from ddcore.runner import resume_run, run

    root = tmp_path / "data"
    root.mkdir()
    names = [f"band{k}" for k in range(KNOWN_ANSWER_CLASSES)]
    (root / "order.txt").write_text(" ".join(names))
    config = {"dataset": "ordered", "data_root": str(root), "ipc": 1, "workers": 0, "eval": KA_EVAL,
              "out": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")}  # fmt: skip

    class BrokenEvaluation:
        name = "broken-evaluation"

        @hookimpl
        def dd_evaluate(self, ctx, distilled):
            raise DDError("evaluation broke")

    with pytest.raises(DDError, match="evaluation broke"):  # fails in evaluation, after the set was saved
        run(config, [OrderedBands(), BrokenEvaluation()])
    saved = DistilledSet.load(tmp_path / "run" / artifacts.DISTILLED_FILE)
    assert saved.data is not None and saved.data["class_names"] == names
    (root / "order.txt").write_text(" ".join(reversed(names)))
    # refused by the run's recorded data (ddcore.run_fingerprint) or by the saved sets' signatures (ddcore.datasig)
    with pytest.raises(ConfigError, match="class_names|same classes in another order") as info:
        resume_run(tmp_path / "run", [OrderedBands()])
    assert "\n" not in str(info.value) and "--overwrite" in str(info.value)
    (root / "order.txt").write_text(" ".join(names))  # the data the run started from: resumes
    resumed = resume_run(tmp_path / "run", [OrderedBands()])
    assert resumed.metrics["eval/acc_runs"] == [100.0]
