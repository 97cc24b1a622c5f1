"""The latent text prior's three prediction types, on cases with a known answer, and broken SD folders.

Each scheduler is a real diffusers config as Stable Diffusion checkpoints ship them (SD 1.x's PNDM
config without a ``prediction_type`` key: epsilon; SD 2.x-768's DDIM config: v-prediction; a DDPM
config with ``prediction_type = "sample"``), loaded by ``load_latent_prior`` from the folder. The
UNet is replaced by a stub with the diffusers call signature whose output is a known function of
its input, and the expected errors are computed here by hand: the cumulative alphas from the beta
schedule's formula, the noise from the same seeded generator, the targets from their definitions
(``eps``; ``v = sqrt(abar) eps - sqrt(1 - abar) x0``; ``x0``).

A folder whose tokenizer or text encoder is missing a part or does not fit the other components is
refused with one ``PluginError`` line at load time, before any scoring (exit 2 through the CLI).
"""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from ddcore import PluginError  # noqa: E402
from ddcore_diffsel.priors import discriminativeness_map  # noqa: E402
from ddcore_diffsel.sources import open_source  # noqa: E402

SD_COMMON = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "set_alpha_to_one": False, "steps_offset": 1, "trained_betas": None, "clip_sample": False}  # fmt: skip
SCHEDULERS = {
    # stable-diffusion-v1-x: PNDM, no prediction_type key (diffusers' default, epsilon)
    "epsilon": {"_class_name": "PNDMScheduler", "skip_prk_steps": True, **SD_COMMON},
    # stable-diffusion-2(-1) at 768 px: DDIM with v-prediction
    "v_prediction": {"_class_name": "DDIMScheduler", "prediction_type": "v_prediction", **SD_COMMON},
    "sample": {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
               "beta_schedule": "linear", "prediction_type": "sample"},  # fmt: skip
}
NAMES = ["zero", "one", "two"]
COND_GAIN, NULL_GAIN = 0.5, -0.25


def abar_by_hand(config: dict) -> torch.Tensor:
    """Cumulative alphas from the beta schedule's definition, float64. Shape: ``-> [T]``."""
    t, start, end = config["num_train_timesteps"], config["beta_start"], config["beta_end"]
    if config["beta_schedule"] == "linear":
        betas = torch.linspace(start, end, t, dtype=torch.float64)
    else:  # scaled_linear
        betas = torch.linspace(start**0.5, end**0.5, t, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def target_by_hand(kind: str, x0: torch.Tensor, eps: torch.Tensor, ab: float) -> torch.Tensor:
    if kind == "epsilon":
        return eps
    if kind == "v_prediction":
        return ab**0.5 * eps - (1 - ab) ** 0.5 * x0
    return x0


class StubUNet(torch.nn.Module):
    """``unet(sample, timestep, encoder_hidden_states=...).sample`` with a known output.

    ``mode="linear"``: ``gain * sample``, gain ``COND_GAIN`` for a class prompt, ``NULL_GAIN`` for the
    empty prompt. ``mode="oracle"``: for a class prompt the exact target of ``kind`` recovered from the
    noisy input and the known clean latents (by hand, float64); zero for the empty prompt.
    """

    def __init__(self, config, null_embedding, mode, kind="", clean=None, abar=None):
        super().__init__()
        self.config = config  # the real tiny UNet's config (the prior reads block_out_channels)
        self.null, self.mode, self.kind, self.clean, self.abar = null_embedding, mode, kind, clean, abar
        self.calls = []

    @property
    def dtype(self):
        return torch.float32

    def forward(self, sample, timestep, encoder_hidden_states):
        self.calls.append(sample.shape[0])
        is_null = (encoder_hidden_states == self.null).flatten(1).all(1).view(-1, 1, 1, 1)
        if self.mode == "linear":
            return SimpleNamespace(sample=torch.where(is_null, NULL_GAIN * sample, COND_GAIN * sample))
        ab = self.abar[timestep].view(-1, 1, 1, 1)
        x0 = self.clean.repeat(sample.shape[0] // self.clean.shape[0], 1, 1, 1).double()
        eps = (sample.double() - ab.sqrt() * x0) / (1 - ab).sqrt()
        exact = target_by_hand(self.kind, x0, eps, ab).float()
        return SimpleNamespace(sample=torch.where(is_null, torch.zeros_like(exact), exact))


def sd_folder(tmp_path, tiny_sd_dir, scheduler: dict):
    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir[0], folder)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler), encoding="utf-8")
    return folder


def prior_with_stub(folder, mode, kind="", images=None):
    prior = open_source(f"local-dir:{folder}", "cpu")
    prior.set_prompts(NAMES, "a photo of a {name}")
    null = prior.prompt_embeddings[-1]
    assert not torch.equal(prior.prompt_embeddings[0], null)
    clean = None if images is None else clean_latents(prior, images)
    abar = abar_by_hand(dict(prior.scheduler.config))
    prior.unet = StubUNet(prior.unet.config, null, mode, kind, clean, abar)
    return prior, abar


def clean_latents(prior, images):
    """The VAE posterior mean of the images as RGB in [-1, 1], times the scaling factor (computed here)."""
    with torch.no_grad():
        rgb = images.repeat(1, 3, 1, 1) * 2 - 1
        return prior.vae.encode(rgb).latent_dist.mean * prior.vae.config.scaling_factor


IMAGES = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(7))
LABELS = torch.tensor([0, 1, 2])


@pytest.mark.parametrize("kind", list(SCHEDULERS))
def test_the_scheduler_config_of_each_prediction_type_is_read(kind, tiny_sd_dir, tmp_path):
    prior = open_source(f"local-dir:{sd_folder(tmp_path, tiny_sd_dir, SCHEDULERS[kind])}", "cpu")
    assert prior.scheduler.config.prediction_type == kind
    abar = abar_by_hand(SCHEDULERS[kind])
    assert torch.allclose(prior.scheduler.alphas_cumprod.double(), abar, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", list(SCHEDULERS))
def test_errors_of_a_linear_unet_equal_the_hand_computed_ones(kind, tiny_sd_dir, tmp_path):
    """``e = sum_c (gain * x_t - target)^2`` with ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``."""
    prior, abar = prior_with_stub(sd_folder(tmp_path, tiny_sd_dir, SCHEDULERS[kind]), "linear")
    t = 300
    e_cond, e_ref = prior.error_maps(IMAGES, LABELS, t, torch.Generator().manual_seed(11))
    assert prior.unet.calls == [6]  # conditional and empty prompt in one call
    x0 = clean_latents(prior, IMAGES).double()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(11)).double()
    ab = float(abar[t])
    noisy = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps
    target = target_by_hand(kind, x0, eps, ab)
    want_cond = (COND_GAIN * noisy - target).square().sum(1)
    want_ref = (NULL_GAIN * noisy - target).square().sum(1)
    assert e_cond.shape == (3, 8, 8)  # the latent side: 16 px / VAE scale 2
    torch.testing.assert_close(e_cond.double(), want_cond, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(e_ref.double(), want_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", list(SCHEDULERS))
def test_an_exact_conditional_prediction_has_zero_error_and_the_null_one_the_target_norm(kind, tiny_sd_dir, tmp_path):
    """The class prompt predicts the exact target of the scheduler's kind, the empty prompt predicts zero:
    ``e_cond = 0`` and ``e_ref = |target|^2``. Scoring against the wrong target (e.g. the noise under
    v-prediction) would leave ``e_cond`` far from zero."""
    prior, abar = prior_with_stub(sd_folder(tmp_path, tiny_sd_dir, SCHEDULERS[kind]), "oracle", kind, IMAGES)
    t = 500
    e_cond, e_ref = prior.error_maps(IMAGES, LABELS, t, torch.Generator().manual_seed(3))
    x0 = clean_latents(prior, IMAGES).double()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3)).double()
    want_ref = target_by_hand(kind, x0, eps, float(abar[t])).square().sum(1)
    assert e_cond.abs().max() < 1e-6 * want_ref.mean()
    torch.testing.assert_close(e_ref.double(), want_ref, rtol=1e-4, atol=1e-5)
    if kind != "epsilon":  # the noise as target would be wrong here
        assert (want_ref - eps.square().sum(1)).abs().mean() > 0.1 * want_ref.mean()


def test_the_sample_prediction_map_is_the_clean_latent_norm_whatever_the_noise(tiny_sd_dir, tmp_path):
    """Under sample prediction the oracle's D is ``|x0|^2`` for every draw and timestep, so the averaged
    map over 2 timesteps x 3 draws, upsampled to the image size, is known exactly."""
    prior, _ = prior_with_stub(sd_folder(tmp_path, tiny_sd_dir, SCHEDULERS["sample"]), "oracle", "sample", IMAGES)
    d = discriminativeness_map(prior, IMAGES, LABELS, [200, 700], 3, torch.Generator().manual_seed(0), resolution=16)
    norm = clean_latents(prior, IMAGES).square().sum(1, keepdim=True)
    want = F.interpolate(norm, size=(16, 16), mode="bilinear", align_corners=False).squeeze(1)
    assert prior.unet.calls == [6] * 6
    torch.testing.assert_close(d, want, rtol=1e-4, atol=1e-5)


def test_an_unknown_prediction_type_is_refused_at_load(tiny_sd_dir, tmp_path):
    folder = sd_folder(tmp_path, tiny_sd_dir, {**SCHEDULERS["sample"], "prediction_type": "flow_prediction"})
    with pytest.raises(PluginError, match=r"prediction_type 'flow_prediction' is not one of epsilon, v_prediction, sample"):
        open_source(f"local-dir:{folder}", "cpu")


# -- broken folders: one line, at load time --------------------------------------------------------


def _text_encoder(folder, **changes):
    from transformers import CLIPTextConfig, CLIPTextModel

    base = {"vocab_size": 76, "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 2,
            "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        CLIPTextModel(CLIPTextConfig(**{**base, **changes})).save_pretrained(folder / "text_encoder")


def _drop_files(*names):
    return lambda folder: [(folder / name).unlink() for name in names]


def _wrong_shapes(folder):
    path = folder / "text_encoder" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "intermediate_size": 48}))


def _tokenizer_length(folder, length):
    (folder / "tokenizer" / "tokenizer_config.json").write_text(json.dumps({"model_max_length": length}))


BROKEN = {
    "tokenizer folder empty": (lambda f: [p.unlink() for p in (f / "tokenizer").iterdir()],
                               "the tokenizer/ folder has no vocab.json + merges.txt or tokenizer.json"),
    "tokenizer without merges": (_drop_files("tokenizer/merges.txt"), "the tokenizer/ folder has no vocab.json + merges.txt"),
    "text encoder without config": (_drop_files("text_encoder/config.json"), "the text_encoder/ folder has no config.json"),
    "text encoder without weights": (_drop_files("text_encoder/model.safetensors"),
                                     "cannot load the text_encoder (Error no file named model.safetensors"),
    "text encoder weights not of its config": (_wrong_shapes, "cannot load the text_encoder (its weights do not have the shapes"),
    "tokenizer larger than the embedding": (lambda f: _text_encoder(f, vocab_size=40),
                                            "the tokenizer has 76 tokens, the text_encoder embeds only 40"),
    "text encoder width not the unet's": (lambda f: _text_encoder(f, hidden_size=24, intermediate_size=48),
                                          "the text_encoder's hidden size is 24, the unet's cross_attention_dim 16"),
    "prompts longer than the positions": (lambda f: _tokenizer_length(f, 32),
                                          "the tokenizer pads prompts to 32 tokens, the text_encoder has 16 positions"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_missing_or_mismatched_part_is_one_plugin_error_line(case, tiny_sd_dir, tmp_path):
    mutate, message = BROKEN[case]
    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir[0], folder)
    mutate(folder)
    with pytest.raises(PluginError) as error:
        open_source(f"local-dir:{folder}", "cpu")
    text = str(error.value)
    assert message in text and text.endswith("(config key plugin.diffsel.prior)") and "\n" not in text


def test_a_tokenizer_without_a_stated_length_pads_to_the_encoders_positions(tiny_sd_dir, tmp_path):
    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir[0], folder)
    (folder / "tokenizer" / "tokenizer_config.json").unlink()  # transformers then says 1e30 tokens
    prior = open_source(f"local-dir:{folder}", "cpu")
    prior.set_prompts(NAMES, "a photo of a {name}")
    assert prior.tokenizer.model_max_length == 16 and prior.prompt_embeddings.shape == (4, 16, 16)


def test_the_cli_refuses_a_mismatched_text_encoder_in_one_line_before_any_scoring(tiny_sd_dir, tmp_path, capsys):
    from ddcore_cli.app import main

    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir[0], folder)
    _text_encoder(folder, vocab_size=40)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["run", "--plugin", "diffsel", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--quiet",
              "--set", f"plugin.diffsel.prior='local-dir:{folder}'", "--set", "plugin.diffsel.resolution=16"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error [diffsel]:"), err
    assert "the text_encoder embeds only 40" in err[0]
    assert not list(tmp_path.glob("cache/diffsel/pools/*.pt"))
