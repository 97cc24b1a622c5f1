"""``tm_log.png``: the matching loss and syn_lr over iterations, a valid PNG drawn from the log's values."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from ddcore.errors import PluginCrash
from ddcore.plots import LOSS_COLOUR, LR_COLOUR, SIZE, SKIPPED_COLOUR, TM_LOG_PLOT, save_tm_log_plot, tm_log_axes, tm_log_figure
from ddcore.runner import resume_run, run
from ddcore.testing import InterruptAt

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROWS = [
    {"iteration": 0, "loss": 1.0, "syn_lr": 0.0100, "skipped": False},
    {"iteration": 1, "loss": 0.5, "syn_lr": 0.0110, "skipped": False},
    {"iteration": 2, "loss": 0.75, "syn_lr": 0.0120, "skipped": True},
    {"iteration": 3, "loss": 0.25, "syn_lr": 0.0105, "skipped": False},
]


def read_png(path) -> Image.Image:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = Image.open(path)
    image.load()  # decodes every row: a truncated file fails here
    assert image.format == "PNG" and image.size == SIZE
    return image.convert("RGB")


def assert_drawn_from(image: Image.Image, rows: list[dict]) -> None:
    """Every row's loss and syn_lr sit where the axes put them, in the series' colour."""
    loss_axes, lr_axes = tm_log_axes(rows)
    for row in rows:
        colour = SKIPPED_COLOUR if row["skipped"] else LOSS_COLOUR
        assert image.getpixel(loss_axes.pixel(row["iteration"], row["loss"])) == colour, row
        assert image.getpixel(lr_axes.pixel(row["iteration"], row["syn_lr"])) == (SKIPPED_COLOUR if row["skipped"] else LR_COLOUR), row


def test_the_picture_is_a_png_of_its_size_drawn_from_the_values(tmp_path):
    path = save_tm_log_plot(ROWS, tmp_path / TM_LOG_PLOT)
    assert sorted(p.name for p in tmp_path.iterdir()) == [TM_LOG_PLOT]  # written atomically: no temporary left
    image = read_png(path)
    assert_drawn_from(image, ROWS)
    loss_axes, lr_axes = tm_log_axes(ROWS)
    left, top, right, bottom = loss_axes.box
    assert loss_axes.box[3] < lr_axes.box[1]  # two panels, loss above syn_lr
    # Known answers: losses span 0.25..1.0 padded by 5 % of 0.75 each side, so 1.0 sits 0.05/1.1 of the
    # height below the top and iteration 3 (the last) at the right edge.
    assert loss_axes.pixel(0, 1.0) == (left, round(top + (bottom - top) * 0.05 / 1.1))
    assert loss_axes.pixel(3, 0.25) == (right, round(bottom - (bottom - top) * 0.05 / 1.1))
    assert image.getpixel((left + 10, bottom - 5)) == (255, 255, 255)  # far from the falling line: background


def test_other_values_draw_another_picture():
    changed = [dict(row) for row in ROWS]
    changed[1]["loss"] = 0.9
    assert tm_log_figure(ROWS).tobytes() != tm_log_figure(changed).tobytes()
    assert tm_log_figure(ROWS).tobytes() == tm_log_figure([dict(row) for row in ROWS]).tobytes()


def test_a_constant_series_and_a_single_row_are_drawn():
    rows = [{"iteration": 0, "loss": 0.5, "syn_lr": 0.01, "skipped": False}]
    image = tm_log_figure(rows)
    assert image.size == SIZE
    loss_axes, lr_axes = tm_log_axes(rows)
    assert loss_axes.y_range == pytest.approx((0.475, 0.525)) and lr_axes.y_range == pytest.approx((0.0095, 0.0105))
    assert_drawn_from(image, rows)
    column, row = loss_axes.pixel(0, 0.5)
    assert row == round((loss_axes.box[1] + loss_axes.box[3]) / 2)


@pytest.mark.slow
def test_a_tm_run_writes_it_also_after_a_failure_and_on_resume(tmp_path):
    config = {
        "ipc": 1, "workers": 0, "distill": "tm", "out": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
        "tm": {"iterations": 4, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "checkpoint_every": 2},
        "experts": {"num": 2, "batch_size": 512}, "eval": {"runs": 0},
    }  # fmt: skip
    out = tmp_path / "run"
    with pytest.raises(PluginCrash, match="killed at 3"):
        run(config, [InterruptAt(at=3)])
    rows = json.loads((out / "tm_log.json").read_text())
    assert [row["iteration"] for row in rows] == [0, 1, 2]
    image = read_png(out / TM_LOG_PLOT)
    assert image.tobytes() == tm_log_figure(rows).tobytes()  # the rows up to the failure
    assert_drawn_from(image, rows)

    resume_run(out)
    rows = json.loads((out / "tm_log.json").read_text())
    assert [row["iteration"] for row in rows] == [0, 1, 2, 3]
    image = read_png(out / TM_LOG_PLOT)
    assert image.tobytes() == tm_log_figure(rows).tobytes()
    assert_drawn_from(image, rows)
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
