"""A prior that knows the class only inside a known region: the map and the windows must find it."""

import torch

from ddcore_diffsel.priors import discriminativeness_map
from ddcore_diffsel.scorers import DiffusionScorer

from diffsel_support import PlantedPrior


def _region(h, w, top, left, size):
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_map_is_positive_inside_the_planted_region_and_zero_outside():
    region = _region(16, 16, 2, 9, 5)
    prior = PlantedPrior(region)
    images = torch.zeros(3, 1, 16, 16)
    d = discriminativeness_map(prior, images, torch.tensor([0, 1, 2]), [300, 600], 2, torch.Generator().manual_seed(0))
    assert d.shape == (3, 16, 16)
    assert (d[:, region] > 0).all()  # the squared noise the class condition explains
    assert torch.count_nonzero(d[:, ~region]) == 0
    # D inside the region is the squared noise: about the channel count (1) on average
    assert 0.5 < d[:, region].mean() < 1.5
    assert prior.calls == 2 * 2  # one batched call (conditional + null together) per timestep and draw


def test_windows_are_picked_inside_the_region():
    region = _region(16, 16, 8, 2, 8)
    scorer = DiffusionScorer(
        PlantedPrior(region), image_side=16, window=8, stride=2, per_image=1, max_iou=0.5, timesteps=[500],
        n_noise=2, contrast="null", num_classes=3, resolution=16, mean=(0.0,), std=(1.0,),
    )
    images = torch.zeros(4, 1, 16, 16)  # normalised with mean 0, std 1 -> prior input 0
    boxes, scores = scorer.candidates(images, torch.tensor([0, 1, 2, 0]), torch.Generator().manual_seed(1))
    assert boxes[:, 0].tolist() == [[8, 2, 8, 8]] * 4
    assert (scores > 0).all()


def test_contrast_with_the_other_classes_finds_the_region_of_the_true_class():
    region = _region(16, 16, 0, 0, 6)
    prior = PlantedPrior(region, true_class=1)
    images = torch.zeros(2, 1, 16, 16)
    d = discriminativeness_map(prior, images, torch.tensor([1, 1]), [500], 1, torch.Generator().manual_seed(0),
                               contrast="others", num_classes=4)
    assert (d[:, region] > 0).all() and d[:, ~region].abs().max() < 1e-5  # rounding of the mean over classes
    assert prior.calls == 1  # all four classes' predictions in one call
    # an image labelled with an uninformative class gets a map that is never positive
    d_other = discriminativeness_map(prior, images, torch.tensor([2, 3]), [500], 1, torch.Generator().manual_seed(0),
                                     contrast="others", num_classes=4)
    assert (d_other <= 1e-5).all()


def test_the_same_generator_seed_gives_the_same_map():
    region = _region(8, 8, 0, 0, 4)
    args = (torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), [500], 2)
    a = discriminativeness_map(PlantedPrior(region), *args, torch.Generator().manual_seed(3))
    b = discriminativeness_map(PlantedPrior(region), *args, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
