"""Helpers for the diffsel tests: a planted-signal prior, a tiny Stable-Diffusion folder, tiny options.

Fixtures:
    tiny_sd_dir: a diffusers-layout folder (vae, unet, text_encoder, tokenizer, scheduler) of randomly
        initialised tiny components built from configs (no network), with its tokenizer's vocab size.
    tiny_options: ``[plugin.diffsel]`` options that make a whole digits run take seconds.

What test modules import (``PlantedPrior``, ``TINY_PRIOR``) is in ``diffsel_support.py``: every test
folder of the repository has a ``conftest.py``, so ``from conftest import`` would be ambiguous.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ddcore_diffsel.pixel_prior import build_scheduler
from diffsel_support import TINY_PRIOR

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing in these tests may download


def write_tiny_tokenizer(folder: Path) -> int:
    """A CLIP BPE vocabulary (letters, letters + ``</w>``, two merges) and merges file; returns the vocab size."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in letters:
            vocab[ch + suffix] = len(vocab)
    vocab["ph"] = len(vocab)
    vocab["ot</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\np h\no t</w>\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16}), encoding="utf-8")
    return len(vocab)


def build_tiny_sd(folder: Path) -> int:
    """Save tiny random SD components in diffusers layout under ``folder``; returns the tokenizer's vocab size."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            layers_per_block=1, norm_num_groups=8, sample_size=32)  # fmt: skip
        unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                    attention_head_dim=4, norm_num_groups=8)  # fmt: skip
        size = write_tiny_tokenizer(folder / "tokenizer")
        text = CLIPTextModel(CLIPTextConfig(vocab_size=size, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                            num_hidden_layers=2, max_position_embeddings=16, bos_token_id=0,
                                            eos_token_id=1, pad_token_id=1))  # fmt: skip
    vae.save_pretrained(folder / "vae")
    unet.save_pretrained(folder / "unet")
    text.save_pretrained(folder / "text_encoder")
    build_scheduler(1000).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}), encoding="utf-8")
    return size


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("tiny-sd")
    return folder, build_tiny_sd(folder)


@pytest.fixture
def tiny_options() -> dict:
    return {"pool_per_class": 6, "n_noise": 1, "batch_size": 16, "train": dict(TINY_PRIOR)}
