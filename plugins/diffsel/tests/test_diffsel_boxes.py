"""bench/diffsel_boxes.py: top-1 windows against a known object box (hit rate, IoU, chance level).

Known answers: a map that is positive exactly on a planted box picks that box (hit 1, IoU 1); a map
that peaks in a far corner misses it (hit 0, IoU 0); the chance level of a 2 x 2 grid is counted by
hand; and the real :class:`DiffusionScorer` with a prior that is informed only on a planted region
(``PlantedPrior``) finds that region through the same functions the script uses.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ddcore import ConfigError
from ddcore_diffsel.scorers import DiffusionScorer
from ddcore_diffsel.windows import square_windows
from diffsel_support import PlantedPrior

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "diffsel_boxes.py"


@pytest.fixture(scope="module")
def boxes():
    spec = importlib.util.spec_from_file_location("ddcore_bench_diffsel_boxes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


TRUTH = torch.tensor([[8, 4, 24, 20]])  # (x0, y0, x1, y1): a 16 px object at left 8, top 4 of a 32 px image


def test_map_on_the_object_hits_it(boxes):
    maps = torch.zeros(1, 32, 32)
    maps[0, 4:20, 8:24] = 1.0  # rows y0..y1, columns x0..x1
    grid = square_windows(32, 32, 16, 4)
    top1, _ = boxes.top_windows(maps, grid)
    assert top1.tolist() == [[4, 8, 16, 16]]
    s = boxes.summary(top1, grid, TRUTH)
    assert s["hit"] == 1.0 and s["iou"] == pytest.approx(1.0)
    assert boxes.peak_in_box(maps, TRUTH).tolist() == [True]


def test_map_elsewhere_misses(boxes):
    maps = torch.zeros(1, 32, 32)
    maps[0, 24:, 24:] = 1.0  # bottom-right corner, disjoint from the object
    grid = square_windows(32, 32, 8, 2)
    top1, _ = boxes.top_windows(maps, grid)
    assert top1.tolist() == [[24, 24, 8, 8]]
    s = boxes.summary(top1, grid, TRUTH)
    assert s["hit"] == 0.0 and s["iou"] == 0.0
    assert boxes.peak_in_box(maps, TRUTH).tolist() == [False]


def test_partial_overlap_iou_and_centre(boxes):
    # window (top 4, left 16, 16 x 16) vs object [8, 24) x [4, 20): overlap 8 x 16 = 128, union 256 + 256 - 128
    hit, iou = boxes.measure(torch.tensor([[4, 16, 16, 16]]), TRUTH)
    assert hit.tolist() == [False]  # centre x = 24 is the box's exclusive end: outside
    hit_out, _ = boxes.measure(torch.tensor([[4, 17, 16, 16]]), TRUTH)  # centre x = 25
    hit_in, _ = boxes.measure(torch.tensor([[4, 15, 16, 16]]), TRUTH)  # centre x = 23
    assert iou.tolist() == [pytest.approx(128 / 384)]
    assert hit_out.tolist() == [False] and hit_in.tolist() == [True]


def test_chance_level_counts_every_candidate(boxes):
    grid = square_windows(4, 4, 2, 2)  # 4 windows; the object is exactly the first
    truth = torch.tensor([[0, 0, 2, 2]])
    s = boxes.summary(grid[:1], grid, truth)
    assert s["hit"] == 1.0 and s["iou"] == 1.0
    assert s["chance_hit"] == pytest.approx(0.25) and s["chance_iou"] == pytest.approx(0.25)
    per_image = boxes.summary(grid[:1], grid.unsqueeze(0), truth)  # [N, P, 4] candidates: same answer
    assert per_image["chance_hit"] == pytest.approx(0.25)


@pytest.mark.parametrize("contrast", ["null", "others"])
def test_real_scorer_finds_the_planted_region(boxes, contrast):
    """The prior is informed exactly on rows 4..19, columns 8..23; every other pixel's D is 0."""
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[4:20, 8:24] = True
    prior = PlantedPrior(region, true_class=1)
    scorer = DiffusionScorer(prior, image_side=32, window=32, stride=32, per_image=1, max_iou=1.0, timesteps=[500],
                             n_noise=2, contrast=contrast, num_classes=3, resolution=32, mean=[0.0], std=[1.0])  # fmt: skip
    images = torch.zeros(2, 1, 32, 32)
    labels = torch.tensor([1, 1])
    maps = scorer.maps(images, labels, [torch.Generator().manual_seed(i) for i in range(2)])
    grid = square_windows(32, 32, 16, 4)
    top1, _ = boxes.top_windows(maps, grid)
    s = boxes.summary(top1, grid, TRUTH.expand(2, 4))
    assert s["hit"] == 1.0 and s["iou"] == pytest.approx(1.0)
    # the same map judged against an object elsewhere: a miss
    far = boxes.summary(top1, grid, torch.tensor([[24, 24, 32, 32]] * 2))
    assert far["hit"] == 0.0 and far["iou"] == 0.0


def test_box_conversion_and_split_mapping(boxes):
    assert boxes.xyxy_to_tlhw(TRUTH).tolist() == [[4, 8, 16, 16]]
    dataset = SimpleNamespace(name="x", extra={"boxes": {"train": torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]])}},
                              train=SimpleNamespace(indices=[2, 0]))  # fmt: skip
    assert boxes.true_boxes(dataset, [0, 1]).tolist() == [[4, 4, 5, 5], [0, 0, 1, 1]]


def test_dataset_without_boxes_is_refused(boxes):
    with pytest.raises(ConfigError, match="extra\\['boxes'\\]"):
        boxes.true_boxes(SimpleNamespace(name="digits", extra={}, train=SimpleNamespace(indices=None)), [0])
