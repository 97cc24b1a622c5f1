"""The saved configs of a Stable-Diffusion-style folder, checked against each other before any weights load.

Everything the JSON files determine is checked here, from the files alone (no weights read), so a
folder whose parts do not fit fails in one line naming the two parts instead of an ``OverflowError``
or a matmul shape error at scoring time:

- ``scheduler/scheduler_config.json``: ``prediction_type`` (absent: ``epsilon``) is one this prior scores.
- ``vae/config.json``: an ``AutoencoderKL`` of RGB images whose ``latent_channels`` is the unet's
  ``in_channels`` (and ``out_channels``); ``scaling_factor`` present and positive (diffusers would
  silently put SD 1.x's 0.18215 in for a missing one, wrong for other VAEs).
- ``unet/config.json``: a ``UNet2DConditionModel`` conditioned on text alone (no ``addition_embed_type``
  or ``class_embed_type``, which need inputs this prior does not give); its ``cross_attention_dim``
  (or ``encoder_hid_dim`` when it projects) is the text encoder's ``hidden_size``.
- ``text_encoder/config.json`` and the tokenizer's files: the tokenizer's tokens fit the encoder's
  ``vocab_size``; ``model_max_length`` in ``tokenizer/tokenizer_config.json`` is a whole number of at
  least 3 and at most the encoder's ``max_position_embeddings`` (absent, null or transformers' "no
  limit" value: the encoder's positions are used).
- weight files: a folder holding only a variant (``*.fp16.safetensors``) is named with the option that
  loads it (``plugin.diffsel.sd_variant``).

A key missing from a config takes the default of the class that loads it (read from its signature).
Errors: ``PluginError`` ``"<source>: <what> (config key plugin.diffsel.prior)"``, one line.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

from ddcore import PluginError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
#: transformers' stand-in for "no limit" (``VERY_LARGE_INTEGER`` = 1e30); anything this large means unset.
NO_LIMIT = 10**6
_WEIGHTS = re.compile(r"^(diffusion_pytorch_model|model|pytorch_model)(?:\.(?P<variant>[A-Za-z0-9_]+))?(?:-\d{5}-of-\d{5})?\.(safetensors|bin)$")


def _refuse(source: str, what: str) -> PluginError:
    return PluginError(f"{source}: {what} (config key plugin.diffsel.prior)")


def read_config(folder: Path, name: str, source: str, required: bool = True) -> dict[str, Any]:
    """``folder/name`` as a JSON object (``{}`` when absent and not ``required``); bad JSON is one line."""
    path = folder / name
    if not path.is_file():
        if required:
            raise _refuse(source, f"{name} is missing")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(source, f"{name} is not readable JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise _refuse(source, f"{name} is not a JSON object")
    return data


def _default(cls, key: str) -> Any:
    return inspect.signature(cls.__init__).parameters[key].default


def _whole(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (``77`` or ``77.0``), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def tokenizer_size(folder: Path, source: str) -> int:
    """How many token ids the tokenizer can emit: its vocabulary plus added tokens (from its JSON files)."""
    ids: set[int] = set()
    vocab = read_config(folder, "vocab.json", source, required=False)
    ids.update(int(i) for i in vocab.values() if _whole(i) is not None)
    whole = read_config(folder, "tokenizer.json", source, required=False)
    model_vocab = (whole.get("model") or {}).get("vocab") or {}
    if isinstance(model_vocab, dict):
        ids.update(int(i) for i in model_vocab.values() if _whole(i) is not None)
    ids.update(int(t["id"]) for t in whole.get("added_tokens") or [] if isinstance(t, dict) and _whole(t.get("id")) is not None)
    settings = read_config(folder, "tokenizer_config.json", source, required=False)
    ids.update(int(i) for i in (settings.get("added_tokens_decoder") or {}) if str(i).isdigit())
    return max(ids) + 1 if ids else 0


def check_configs(folder: Path, source: str) -> int:
    """Check every compatibility the saved configs determine; return the prompt length in tokens.

    Raises:
        PluginError: one line naming the two parts that disagree (and the file to fix).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    scheduler = read_config(folder, "scheduler/scheduler_config.json", source)
    vae = read_config(folder, "vae/config.json", source)
    unet = read_config(folder, "unet/config.json", source)
    text = read_config(folder, "text_encoder/config.json", source)
    if text.get("model_type") == "clip" and isinstance(text.get("text_config"), dict):
        text = text["text_config"]  # a whole CLIPConfig: CLIPTextModel reads its text part
    tokenizer = read_config(folder, "tokenizer/tokenizer_config.json", source, required=False)

    def refuse(what: str) -> None:
        raise _refuse(source, what)

    kind = scheduler.get("prediction_type") or "epsilon"
    if kind not in PREDICTION_TYPES:
        refuse(f"the scheduler's prediction_type {kind!r} is not one of {', '.join(PREDICTION_TYPES)}")
    for part, config, wanted in (("vae", vae, "AutoencoderKL"), ("unet", unet, "UNet2DConditionModel")):
        found = config.get("_class_name", wanted)
        if found != wanted:
            refuse(f"the {part}/ folder holds a {found} ({part}/config.json _class_name); this prior assembles an "
                   f"{wanted} with the other parts (Stable Diffusion 1.x/2.x layout)")  # fmt: skip
    vae_in = vae.get("in_channels", _default(AutoencoderKL, "in_channels"))
    if vae_in != 3:
        refuse(f"the vae encodes {vae_in}-channel images (vae/config.json in_channels), the prior gives it RGB images")
    scale = vae.get("scaling_factor")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        refuse(f"vae/config.json has no usable scaling_factor ({scale!r}): the factor the unet's latents were scaled by "
               "(0.18215 for Stable Diffusion 1.x/2.x) must be written there")  # fmt: skip
    latents = vae.get("latent_channels", _default(AutoencoderKL, "latent_channels"))
    unet_in = unet.get("in_channels", _default(UNet2DConditionModel, "in_channels"))
    unet_out = unet.get("out_channels", _default(UNet2DConditionModel, "out_channels"))
    if latents != unet_in or unet_out != unet_in:
        refuse(f"the vae makes {latents}-channel latents, the unet takes {unet_in} and predicts {unet_out} channels")
    for key in ("addition_embed_type", "class_embed_type"):
        if unet.get(key) is not None:
            refuse(f"the unet needs extra conditioning (unet/config.json {key} {unet[key]!r}, e.g. SDXL's) that the "
                   "text_encoder alone does not give")  # fmt: skip
    hidden = text.get("hidden_size", CLIPTextConfig().hidden_size)
    projected = unet.get("encoder_hid_dim")
    cross = unet.get("cross_attention_dim", _default(UNet2DConditionModel, "cross_attention_dim"))
    if projected is not None:
        if hidden != projected:
            refuse(f"the text_encoder's hidden size is {hidden}, the unet's encoder_hid_dim {projected}")
    elif any(dim != hidden for dim in (cross if isinstance(cross, (list, tuple)) else [cross])):
        refuse(f"the text_encoder's hidden size is {hidden}, the unet's cross_attention_dim {cross}")
    vocab = text.get("vocab_size", CLIPTextConfig().vocab_size)
    tokens = tokenizer_size(folder / "tokenizer", source)
    if tokens > vocab:
        refuse(f"the tokenizer has {tokens} tokens, the text_encoder embeds only {vocab}")
    positions = text.get("max_position_embeddings", CLIPTextConfig().max_position_embeddings)
    length = tokenizer.get("model_max_length")
    if length is None or (isinstance(length, (int, float)) and not isinstance(length, bool) and length >= NO_LIMIT):
        return int(positions)
    whole = _whole(length)
    if whole is None or whole < 3:
        refuse(f"the tokenizer's model_max_length {length!r} (tokenizer/tokenizer_config.json) is not a prompt length: "
               f"write a whole number from 3 to the text_encoder's {positions} positions, or remove it")  # fmt: skip
    if whole > positions:
        refuse(f"the tokenizer pads prompts to {whole} tokens, the text_encoder has {positions} positions")
    return whole


def check_weight_files(folder: Path, source: str, variant: str) -> None:
    """Refuse a component whose weight files are all of another variant than ``variant`` (``""``: the
    plain files), naming the files and the option value that loads them. Components without any weight
    file are left to the loader (its message names the file it wanted)."""
    if variant and not re.fullmatch(r"[A-Za-z0-9_]+", variant):
        raise PluginError(f"config key 'plugin.diffsel.sd_variant' must be a variant name such as 'fp16', got {variant!r}")
    for part in ("vae", "unet", "text_encoder"):
        found: dict[str, list[str]] = {}
        for path in sorted((folder / part).iterdir()):
            match = _WEIGHTS.match(path.name)
            if match:
                found.setdefault(match["variant"] or "", []).append(path.name)
        if not found or variant in found:
            continue
        have = sorted(found)
        files = found[have[-1]]
        shown = files[0] + (f" and {len(files) - 1} more" if len(files) > 1 else "")
        wanted = f"{variant} weights" if variant else "plain weights"
        hint = " or ".join(f'"{v}"' for v in have)
        raise PluginError(f"{source}: the {part}/ folder has no {wanted}, only {shown}; set plugin.diffsel.sd_variant = "
                          f"{hint} to load those (computed in float32) (config key plugin.diffsel.sd_variant)")  # fmt: skip
