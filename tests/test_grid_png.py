"""grid.png people can read: >= 64 px cells (nearest), class names on the left, rows of <= 10, bounded size;
`dd show` names the pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ddcore.artifacts import save_grid
from ddcore.distilled import DistilledSet
from ddcore.grid import plan_grid

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_set(ipc: int, classes: int, channels: int, size: int = 32, seed: int = 0) -> DistilledSet:
    """Random images whose de-normalised values are exact multiples of 1/255 (so a PNG holds them exactly),
    in 4 x 4 blocks (a picture of pure noise takes long to compress)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(ipc)
    blocks = torch.randint(0, 256, (len(labels), channels, size // 4, size // 4), generator=generator).float() / 255
    pixels = blocks.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    names = CIFAR_NAMES if classes == 10 else [f"class-{k:03d}" for k in range(classes)]
    mean, std = (0.25,) * channels, (0.5,) * channels
    return DistilledSet((pixels - 0.25) / 0.5, labels, names, mean=mean, std=std)


def read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        image.verify()  # a valid PNG (checksums, structure)
    with Image.open(path) as image:
        assert image.format == "PNG"
        array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


def expected_cell(distilled: DistilledSet, index: int, scale: int) -> np.ndarray:
    """Image ``index`` de-normalised, in 0..255, each pixel repeated ``scale`` x ``scale`` times (nearest)."""
    image = distilled.images[index] * 0.5 + 0.25
    image = image.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def check_grid(tmp_path, distilled: DistilledSet) -> tuple[np.ndarray, object]:
    """Save, read back, and check every drawn cell's pixels, its size and the label margin; returns (array, layout)."""
    path = tmp_path / "grid.png"
    save_grid(distilled, path)
    array = read_png(path)
    layout = plan_grid(distilled.labels, distilled.class_names, tuple(distilled.images.shape[2:]))
    height, width, channels = array.shape
    assert channels == distilled.images.shape[1]
    assert height <= 4096 and width <= 4096
    assert layout.cell[0] >= 64 and layout.cell[1] >= 64
    first = {k: int(torch.nonzero(distilled.labels == k)[0]) for k in range(distilled.num_classes)}
    for k, j, top, left in layout.cells:
        cell = array[top : top + layout.cell[0], left : left + layout.cell[1]]
        assert np.array_equal(cell, expected_cell(distilled, first[k] + j, layout.scale)), (k, j)
    # the label margin: left of every class's first cell, holding dark (text) pixels and no image pixels
    for k, top, left in layout.labels:
        first_left = min(l for c, j, t, l in layout.cells if c == k)
        margin = array[top : top + layout.cell[0], left:first_left]
        assert first_left - left >= 30, "no room for a class name"
        assert (margin < 100).any(), f"no class name drawn for class {k}"
    return array, layout


def test_ipc1_ten_classes_is_no_longer_a_strip(tmp_path):
    distilled = make_set(ipc=1, classes=10, channels=1)
    array, layout = check_grid(tmp_path, distilled)
    assert layout.scale == 2 and layout.cell == (64, 64) and layout.cols == 1 and layout.panels == 1
    assert array.shape[0] == 10 * 66 + 2  # one row per class, 64 px cells, 2 px padding
    assert array.shape[1] > 66 + 2 + 30  # the cell plus a label margin
    assert layout.note == "" and layout.shown == [1] * 10
    # the names differ, so the label pixels differ from row to row
    lefts = [min(l for c, j, t, l in layout.cells if c == k) for k in range(10)]
    margins = {array[t : t + 64, :lefts[k]].tobytes() for k, t, _ in layout.labels}
    assert len(margins) == 10


def test_ipc50_wraps_each_class_into_rows_of_ten(tmp_path):
    distilled = make_set(ipc=50, classes=10, channels=3)
    array, layout = check_grid(tmp_path, distilled)
    assert layout.cols == 10 and layout.shown == [50] * 10 and layout.note == ""
    rows = {}
    for k, j, top, left in layout.cells:
        rows.setdefault((k, top), []).append(j)
    assert len(rows) == 10 * 5 and all(len(js) == 10 for js in rows.values())
    tops = sorted({top for k, j, top, left in layout.cells if k == 0})
    assert [b - a for a, b in zip(tops, tops[1:])] == [66] * 4  # one class's rows are 64 px + 2 px apart
    next_class = min(top for k, j, top, left in layout.cells if k == 1)
    assert next_class - tops[-1] > 66  # and classes further apart


def test_hundred_classes_stay_a_sane_size(tmp_path):
    distilled = make_set(ipc=1, classes=100, channels=3)
    array, layout = check_grid(tmp_path, distilled)
    assert layout.shown == [1] * 100 and layout.note == ""
    assert layout.panels > 1  # 100 rows of 66 px do not fit in 4096 px: columns of classes side by side
    assert max(array.shape[:2]) / min(array.shape[:2]) < 3


@pytest.mark.slow  # a 12-megapixel picture
def test_hundred_classes_ipc50_show_the_first_rows_and_say_so(tmp_path):
    distilled = make_set(ipc=50, classes=100, channels=3)
    array, layout = check_grid(tmp_path, distilled)
    shown = set(layout.shown)
    assert len(shown) == 1 and (cap := shown.pop()) < 50 and cap % 10 == 0
    assert layout.note == f"showing the first {cap} images of each class (picture capped at 4096 px)"
    assert len(layout.cells) == 100 * cap
    strip = array[layout.note_top : layout.note_top + 17]
    assert (strip < 100).any()  # the note is written


def test_nothing_to_hide_means_no_note_and_larger_images_are_not_enlarged():
    layout = plan_grid(torch.arange(3).repeat_interleave(4), ["a", "b", "c"], (128, 128))
    assert layout.scale == 1 and layout.cell == (128, 128) and layout.note == ""
    tiny = plan_grid(torch.zeros(2, dtype=torch.long), ["only"], (8, 8))
    assert tiny.scale == 8 and tiny.cell == (64, 64)


def test_soft_labels_are_placed_by_argmax(tmp_path):
    distilled = make_set(ipc=2, classes=10, channels=1)
    hard = distilled.labels
    distilled.labels = torch.nn.functional.one_hot(hard, 10).float() * 3.0
    check_grid(tmp_path, DistilledSet(distilled.images, hard, distilled.class_names, distilled.mean, distilled.std))
    path = tmp_path / "soft.png"
    save_grid(distilled, path)
    assert np.array_equal(read_png(path), read_png(tmp_path / "grid.png"))


# ----------------------------------------------------------------------------------------------
# dd show names the pictures
# ----------------------------------------------------------------------------------------------


def fake_run(folder, tm_log: bool):
    folder.mkdir()
    manifest = {"format": 1, "status": "complete", "seed": 0, "config": {"dataset": "digits", "ipc": 1}, "plugins": []}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    save_grid(make_set(ipc=1, classes=10, channels=1), folder / "grid.png")
    if tm_log:
        Image.new("RGB", (8, 8), "white").save(folder / "tm_log.png")
    return folder


@pytest.mark.parametrize("tm_log", [False, True], ids=["selection-only", "tm"])
def test_show_prints_where_the_pictures_are(cli, tmp_path, tm_log):
    run_dir = fake_run(tmp_path / "run", tm_log)
    code, out, err = cli("show", run_dir)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("picture: ")]
    expected = [f"picture: {run_dir / 'grid.png'}"] + ([f"picture: {run_dir / 'tm_log.png'}"] if tm_log else [])
    assert lines == expected
    code, out, err = cli("show", run_dir, "--json")
    assert code == 0, err
    assert json.loads(out)["pictures"] == [line.removeprefix("picture: ") for line in expected]
