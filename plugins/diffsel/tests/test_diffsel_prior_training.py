"""The self-trained pixel prior: cached, resumable bit for bit, reachable from `dd diffsel train-prior`."""

import torch

from ddcore_diffsel.pixel_prior import WEIGHTS_FILE, load_prior, read_meta
from ddcore_diffsel.train_prior import ensure_pixel_prior

from diffsel_support import TINY_PRIOR


def _context(dd_context, tmp_path, name, **train):
    options = {"train": {**TINY_PRIOR, **train}}
    return dd_context(plugins=["diffsel"], cache_dir=str(tmp_path / name), plugin={"diffsel": options})


def _weights(folder):
    return torch.load(folder / WEIGHTS_FILE, weights_only=True)["unet"]


def test_resumed_training_ends_with_the_same_weights_as_an_uninterrupted_one(dd_context, tmp_path):
    straight = _context(dd_context, tmp_path, "a", steps=4)
    folder_a = ensure_pixel_prior(straight, straight.dataset, straight.plugin_config("diffsel").train)
    first = _context(dd_context, tmp_path, "b", steps=2)
    folder_b = ensure_pixel_prior(first, first.dataset, first.plugin_config("diffsel").train)
    assert read_meta(folder_b)["steps"] == 2
    resumed = _context(dd_context, tmp_path, "b", steps=4)
    assert ensure_pixel_prior(resumed, resumed.dataset, resumed.plugin_config("diffsel").train) == folder_b
    assert resumed.records["diffsel/prior"]["trained_now"] == 2
    a, b = _weights(folder_a), _weights(folder_b)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = _context(dd_context, tmp_path, "b", steps=4)  # cached: nothing to train
    ensure_pixel_prior(again, again.dataset, again.plugin_config("diffsel").train)
    assert again.records["diffsel/prior"]["trained_now"] == 0


def test_saved_prior_loads_with_its_classes_and_predicts_noise_shaped_output(dd_context, tmp_path):
    ctx = _context(dd_context, tmp_path, "c", steps=1)
    prior = load_prior(ensure_pixel_prior(ctx, ctx.dataset, ctx.plugin_config("diffsel").train))
    assert prior.class_names == [str(d) for d in range(10)] and prior.size == 8 and prior.channels == 1
    out = prior.predict(torch.zeros(2, 1, 8, 8), torch.tensor([10, 900]), torch.tensor([3, -1]))
    assert out.shape == (2, 1, 8, 8)


def test_train_prior_command(tmp_path, capsys):
    from ddcore_cli.app import main

    try:
        main(["diffsel", "train-prior", "--dataset", "digits", "--steps", "2", "--size", "8", "--channels", "8,16",
              "--batch-size", "4", "--cache-dir", str(tmp_path), "--quiet"])  # fmt: skip
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    assert "prior for digits: 2 steps (2 trained now), 8 px" in out
    assert list((tmp_path / "diffsel" / "priors").glob("*/diffsel_prior.json"))
