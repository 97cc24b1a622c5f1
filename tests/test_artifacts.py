"""Artifacts: atomic writes, the class grid, the distilled-set file."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ddcore.artifacts import class_grid, save_grid
from ddcore.atomic import atomic_open, write_json
from ddcore.distilled import DistilledSet
from ddcore.errors import DDError


def make_set(per_class=(2, 1, 3), size=4) -> DistilledSet:
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(per_class)])
    images = (labels.float() / 10).view(-1, 1, 1, 1).expand(-1, 1, size, size).clone()  # class k -> value k/10
    return DistilledSet(images, labels, ["a", "b", "c"], mean=(0.0,), std=(1.0,))


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write('{"half": ')
            raise RuntimeError("killed")
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_grid_has_one_row_per_class_in_label_order():
    distilled = make_set(size=32)
    grid = class_grid(distilled, pad=2, min_cell=32, labels=False)
    assert grid.shape == (1, 3 * 34 + 2, 3 * 34 + 2)
    for row, (value, count) in enumerate(((0.0, 2), (0.1, 1), (0.2, 3))):
        top = 2 + row * 34
        for col in range(3):
            left = 2 + col * 34
            cell = grid[0, top : top + 32, left : left + 32]
            expected = value if col < count else 1.0  # empty cells: the white background
            assert torch.allclose(cell, torch.full_like(cell, expected)), (row, col)


def test_grid_enlarges_small_images_and_denormalises(tmp_path):
    distilled = make_set(size=8)
    distilled.mean, distilled.std = (0.5,), (0.5,)
    grid = class_grid(distilled, pad=0, min_cell=32, labels=False)
    assert grid.shape == (1, 3 * 32, 3 * 32)
    assert torch.isclose(grid[0, 40, 0], torch.tensor(0.5 + 0.5 * 0.1))
    save_grid(distilled, tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as image:
        assert image.mode == "L"


def test_distilled_round_trip_and_corrupt_file(tmp_path):
    distilled = make_set()
    distilled.lr = 0.02
    distilled.meta = {"selected_by": "random-real"}
    distilled.save(tmp_path / "distilled.pt")
    loaded = DistilledSet.load(tmp_path / "distilled.pt")
    assert torch.equal(loaded.images, distilled.images) and torch.equal(loaded.labels, distilled.labels)
    assert loaded.lr == 0.02 and loaded.class_names == ["a", "b", "c"] and loaded.meta == distilled.meta
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(DDError, match="bad.pt: not a readable distilled set"):
        DistilledSet.load(tmp_path / "bad.pt")
    with pytest.raises(DDError, match="no such file"):
        DistilledSet.load(tmp_path / "missing.pt")


def test_validate_rejects_inconsistent_sets():
    distilled = make_set()
    distilled.labels = distilled.labels[:-1]
    with pytest.raises(ValueError, match="6 images but 5 labels"):
        distilled.validate()
    soft = make_set()
    soft.labels = torch.zeros(6, 4)
    with pytest.raises(ValueError, match="soft labels have 4 columns for 3 classes"):
        soft.validate()
