"""Stable Diffusion folders whose parts do not fit each other: one line at load, before any weights (issue 19, kind 4).

Most folders here hold the tiny SD fixture's JSON configs and tokenizer files only, no weights: the
config checks must answer before a weight file is even looked for (a folder that passed them would
fail with "cannot load the vae (... no file named ...)"). The fp16 folder holds real tiny weights.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch

from ddcore import PluginError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs ddcore[sd]")

SUFFIX = "(config key plugin.diffsel.prior)"


def configs_only(tiny_sd_dir, tmp_path):
    """The tiny SD folder without any weight file."""
    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir[0], folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return folder


def edit(folder, name, **changes):
    path = folder / name
    data = json.loads(path.read_text()) if path.exists() else {}
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def refusal(folder, variant=""):
    from ddcore_diffsel.sources import open_source

    with pytest.raises(PluginError) as error:
        open_source(f"local-dir:{folder}", "cpu", variant)
    text = str(error.value)
    assert "\n" not in text, text
    return text


CASES = {
    # the issue's inputs
    "tokenizer length negative (OverflowError today)": (
        ("tokenizer/tokenizer_config.json", {"model_max_length": -1}),
        "the tokenizer's model_max_length -1 (tokenizer/tokenizer_config.json) is not a prompt length: write a whole number "
        "from 3 to the text_encoder's 16 positions"),
    "tokenizer length a string": (("tokenizer/tokenizer_config.json", {"model_max_length": "77"}), "model_max_length '77'"),
    "tokenizer length a fraction": (("tokenizer/tokenizer_config.json", {"model_max_length": 7.5}), "model_max_length 7.5"),
    "tokenizer length beyond the positions": (("tokenizer/tokenizer_config.json", {"model_max_length": 32}),
                                              "the tokenizer pads prompts to 32 tokens, the text_encoder has 16 positions"),
    "text encoder width not the cross-attention width": (("text_encoder/config.json", {"hidden_size": 24}),
                                                         "the text_encoder's hidden size is 24, the unet's cross_attention_dim 16"),
    "per-block cross-attention widths": (("unet/config.json", {"cross_attention_dim": [16, 24]}),
                                         "the text_encoder's hidden size is 16, the unet's cross_attention_dim [16, 24]"),
    "projection of another width": (("unet/config.json", {"encoder_hid_dim": 24}),
                                    "the text_encoder's hidden size is 16, the unet's encoder_hid_dim 24"),
    "unet input not the latents": (("unet/config.json", {"in_channels": 8}),
                                   "the vae makes 4-channel latents, the unet takes 8 and predicts 4 channels"),
    "vae latents not the unet's": (("vae/config.json", {"latent_channels": 16}),
                                   "the vae makes 16-channel latents, the unet takes 4 and predicts 4 channels"),
    "scaling factor missing": (("vae/config.json", {"scaling_factor": ...}),
                               "vae/config.json has no usable scaling_factor (None): the factor the unet's latents were scaled by"),
    "scaling factor zero": (("vae/config.json", {"scaling_factor": 0}), "vae/config.json has no usable scaling_factor (0)"),
    "prediction type unsupported": (("scheduler/scheduler_config.json", {"prediction_type": "flow_prediction"}),
                                    "the scheduler's prediction_type 'flow_prediction' is not one of epsilon, v_prediction, sample"),
    "vae of grey images": (("vae/config.json", {"in_channels": 1}),
                           "the vae encodes 1-channel images (vae/config.json in_channels), the prior gives it RGB images"),
    "SDXL-style extra conditioning": (("unet/config.json", {"addition_embed_type": "text_time"}),
                                      "the unet needs extra conditioning (unet/config.json addition_embed_type 'text_time'"),
    "not a UNet": (("unet/config.json", {"_class_name": "SD3Transformer2DModel"}),
                   "the unet/ folder holds a SD3Transformer2DModel (unet/config.json _class_name)"),
    "added tokens beyond the embedding": (("tokenizer/tokenizer_config.json", {"model_max_length": 16, "added_tokens_decoder": {"80": {}}}),
                                          "the tokenizer has 81 tokens, the text_encoder embeds only 76"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_each_disagreement_is_one_line_naming_both_parts_before_any_weights(case, tiny_sd_dir, tmp_path):
    (name, changes), message = CASES[case]
    folder = configs_only(tiny_sd_dir, tmp_path)
    edit(folder, name, **changes)
    text = refusal(folder)
    assert message in text and text.endswith(SUFFIX) and "no file named" not in text


def test_configs_that_fit_pass_and_only_then_the_missing_weights_are_named(tiny_sd_dir, tmp_path):
    from ddcore_diffsel.sd_configs import check_configs

    folder = configs_only(tiny_sd_dir, tmp_path)
    assert check_configs(folder, "x") == 16
    edit(folder, "unet/config.json", cross_attention_dim=[16, 16])
    edit(folder, "tokenizer/tokenizer_config.json", model_max_length=1e30)  # transformers' "no limit": the positions
    assert check_configs(folder, "x") == 16
    edit(folder, "tokenizer/tokenizer_config.json", model_max_length=12.0)
    assert check_configs(folder, "x") == 12
    assert "cannot load the vae" in refusal(folder)  # the configs fit: the loader is reached and names its file
    (folder / "unet" / "config.json").write_text("{ not json")
    assert "unet/config.json is not readable JSON" in refusal(folder)


@pytest.mark.parametrize("length", [None, 1e30])
def test_a_tokenizer_without_a_usable_stated_length_pads_to_the_encoders_positions(length, tiny_sd_dir, tmp_path):
    from ddcore_diffsel.sources import open_source

    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir[0], folder)
    edit(folder, "tokenizer/tokenizer_config.json", model_max_length=length)
    prior = open_source(f"local-dir:{folder}", "cpu")
    prior.set_prompts(["a crane bird", "a construction crane"])
    assert prior.tokenizer.model_max_length == 16 and prior.prompt_embeddings.shape == (3, 16, 16)


@pytest.fixture
def fp16_only(tiny_sd_dir, tmp_path):
    """The tiny SD folder with its weights saved only as the fp16 variant (``*.fp16.safetensors``)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = tmp_path / "fp16"
    shutil.copytree(tiny_sd_dir[0], folder)
    for part, cls in (("vae", AutoencoderKL), ("unet", UNet2DConditionModel), ("text_encoder", CLIPTextModel)):
        model = cls.from_pretrained(folder / part).half()
        for weights in (folder / part).glob("*.safetensors"):
            weights.unlink()
        model.save_pretrained(folder / part, variant="fp16")
    return folder


def test_an_fp16_only_folder_gets_the_option_that_loads_it(fp16_only, tiny_sd_dir):
    from ddcore_diffsel.sources import open_source

    text = refusal(fp16_only)
    assert "the vae/ folder has no plain weights, only diffusion_pytorch_model.fp16.safetensors" in text
    assert 'set plugin.diffsel.sd_variant = "fp16"' in text and text.endswith("(config key plugin.diffsel.sd_variant)")
    prior = open_source(f"local-dir:{fp16_only}", "cpu", "fp16")
    plain = open_source(f"local-dir:{tiny_sd_dir[0]}", "cpu")
    for mine, theirs in zip(prior.unet.parameters(), plain.unet.parameters()):
        assert mine.dtype == torch.float32 and torch.equal(mine, theirs.half().float())  # fp16 files, float32 compute
    assert 'only diffusion_pytorch_model.safetensors; set plugin.diffsel.sd_variant = ""' in refusal(tiny_sd_dir[0], "fp16")


def test_the_option_is_read_from_the_run_config(fp16_only, run_tiny):
    options = {"prior": f"local-dir:{fp16_only}", "pool_per_class": 2, "n_noise": 1, "batch_size": 8, "resolution": 16}
    with pytest.raises(PluginError, match="sd_variant"):
        run_tiny(plugins=["diffsel"], eval={"runs": 0}, plugin={"diffsel": options})
    result = run_tiny(plugins=["diffsel"], eval={"runs": 0}, plugin={"diffsel": {**options, "sd_variant": "fp16"}})
    assert result.distilled.images.shape == (10, 1, 32, 32)


def test_the_cli_says_the_issue_folder_in_one_line_and_writes_nothing(tiny_sd_dir, tmp_path, capsys):
    from ddcore_cli.app import main

    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir[0], folder)
    edit(folder, "tokenizer/tokenizer_config.json", model_max_length=-1)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["run", "--plugin", "diffsel", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--quiet",
              "--set", f"plugin.diffsel.prior='local-dir:{folder}'", "--set", "plugin.diffsel.resolution=16"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_max_length -1" in err[0], err
    assert not list(tmp_path.glob("cache/diffsel/pools/*.pt"))
