"""The latent text prior end to end on tiny random components built from configs (no network)."""

import pytest
import torch

pytest.importorskip("transformers")

from ddcore_diffsel.priors import discriminativeness_map  # noqa: E402
from ddcore_diffsel.sd_prior import LatentTextPrior  # noqa: E402
from ddcore_diffsel.sources import open_source, prepare_prior  # noqa: E402


def test_tiny_tokenizer_is_real_not_all_unknown(tiny_sd_dir):
    folder, vocab_size = tiny_sd_dir
    prior = open_source(f"local-dir:{folder}", "cpu")
    assert isinstance(prior, LatentTextPrior)
    assert prior.tokenizer.vocab_size == vocab_size == 76
    ids = prior.tokenizer("a photo of a cat").input_ids
    unknown = prior.tokenizer.unk_token_id
    assert sum(i != unknown for i in ids[1:-1]) >= 8  # letters and merges, not the unknown token


def test_latent_prior_scores_with_one_batched_unet_call(tiny_sd_dir, tiny_dataset):
    folder, _ = tiny_sd_dir
    prior = open_source(f"local-dir:{folder}", "cpu")
    used = prepare_prior(prior, tiny_dataset, resolution=16, prompt="a photo of a {name}")
    assert used == 16 and prior.prompt_embeddings.shape[0] == 4  # three classes plus the empty prompt
    assert not torch.equal(prior.prompt_embeddings[0], prior.prompt_embeddings[3])
    batches = []
    prior.unet.register_forward_hook(lambda _m, args, kwargs, _out: batches.append(args[0].shape[0]), with_kwargs=True)
    images = torch.rand(3, 1, 8, 8)  # grey images in [0, 1], repeated to RGB for the VAE
    d = discriminativeness_map(prior, images, torch.tensor([0, 1, 2]), [500], 2, torch.Generator().manual_seed(0),
                               resolution=16)  # fmt: skip
    assert batches == [6, 6]  # conditional and empty prompt together, once per noise draw
    assert d.shape == (3, 8, 8) and torch.isfinite(d).all() and d.abs().sum() > 0
    again = discriminativeness_map(prior, images, torch.tensor([0, 1, 2]), [500], 2, torch.Generator().manual_seed(0),
                                   resolution=16)  # fmt: skip
    assert torch.equal(d, again)


def test_selection_runs_end_to_end_with_the_latent_prior(tiny_sd_dir, run_tiny):
    folder, _ = tiny_sd_dir
    options = {"prior": f"local-dir:{folder}", "pool_per_class": 3, "n_noise": 1, "batch_size": 8, "resolution": 16}
    result = run_tiny(plugins=["diffsel"], ipc=1, eval={"runs": 0}, plugin={"diffsel": options})
    assert result.distilled.images.shape == (10, 1, 32, 32)
    assert result.distilled.meta["selected_by"] == "diffsel" and result.distilled.meta["initialized_by"] == "diffsel"
    assert result.manifest["records"]["diffsel/pool"]["candidates"] == 30
