"""A text-conditioned latent diffusion prior (the Stable Diffusion family), assembled with diffusers.

Components are read from a diffusers folder layout (``vae/``, ``unet/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``), from a local directory or a Hugging Face id already in the cache,
always with ``local_files_only=True``: nothing is downloaded. ``transformers`` (CLIP text encoder and
tokenizer) is imported only here, with an install hint naming the ``ddcore[sd]`` extra.

Scoring: images (``[0, 1]``, grey images repeated to RGB) are scaled to ``[-1, 1]`` and encoded with
the VAE (the posterior mean, minus ``shift_factor`` when the VAE has one, times ``scaling_factor``);
the conditional prompt is ``prompt`` with the class's name (:mod:`ddcore_diffsel.prompts`: distinct per class, ImageNet names disambiguated by their
WordNet id), the reference is the empty prompt; both UNet predictions run in one batched call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ddcore import PluginError
from ddcore_diffsel.priors import NULL, DiffusionPrior
from ddcore_diffsel.sd_configs import PREDICTION_TYPES

COMPONENTS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")
#: Files each component folder must hold (any one of the alternatives).
REQUIRED_FILES = {
    "vae": [("config.json",)],
    "unet": [("config.json",)],
    "text_encoder": [("config.json",)],
    "tokenizer": [("vocab.json", "merges.txt"), ("tokenizer.json",)],
    "scheduler": [("scheduler_config.json",)],
}


def _transformers():
    try:
        import transformers
    except ImportError:
        raise PluginError(
            "latent text priors need transformers (CLIP text encoder and tokenizer): pip install 'ddcore[sd]'"
        ) from None
    return transformers


def is_sd_folder(folder: Path) -> bool:
    """A diffusers pipeline folder: ``model_index.json`` or a ``unet/config.json`` beside a ``vae/``."""
    return (folder / "model_index.json").is_file() or ((folder / "unet" / "config.json").is_file() and (folder / "vae").is_dir())


def hub_snapshot(repo_id: str) -> Path:
    """The local snapshot folder of ``repo_id`` in the Hugging Face cache; never downloads."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        raise PluginError(
            f"hf-hub:{repo_id} is not in the Hugging Face cache (ddcore never downloads models); fetch it first, "
            f"e.g. `huggingface-cli download {repo_id}`, or point plugin.diffsel.prior at a local-dir:"
        ) from None


class LatentTextPrior(DiffusionPrior):
    """VAE + text-conditioned UNet + CLIP text encoder as a :class:`DiffusionPrior`.

    Args:
        vae: ``AutoencoderKL``. unet: ``UNet2DConditionModel``. text_encoder: ``CLIPTextModel``.
        tokenizer: ``CLIPTokenizer``. scheduler: a DDPM-style scheduler (``add_noise``, ``alphas_cumprod``).
        source: what the prior was loaded from (recorded in the fingerprint).
    """

    kind = "latent-text"

    def __init__(self, vae, unet, text_encoder, tokenizer, scheduler, source: str = "", device="cpu"):
        super().__init__(scheduler, device)
        self.vae = vae.to(self.device).eval()
        self.unet = unet.to(self.device).eval()
        self.text_encoder = text_encoder.to(self.device).eval()
        self.tokenizer = tokenizer
        self.source = source
        self.prompt_embeddings: torch.Tensor | None = None  # [K + 1, L, D]; row K is the empty prompt
        self.prompts: list[str] = []  # the K class prompts, in label order

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def multiple(self) -> int:
        return self.vae_scale * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def native_resolution(self, image_side: int) -> int:
        return image_side

    def check(self, class_names: Sequence[str], image_shape: tuple[int, int, int], resolution: int) -> None:
        if image_shape[0] not in (1, 3):
            raise PluginError(f"latent text priors take grey or RGB images, the dataset has {image_shape[0]} channels")
        if resolution % self.multiple:
            raise PluginError(
                f"the latent diffusion prior cannot take {resolution} px images: VAE and UNet need a side divisible "
                f"by {self.multiple} (config key plugin.diffsel.resolution)"
            )

    def set_prompts(self, names: Sequence[str], template: str = "{name}") -> None:
        """Encode ``template`` for each class name, plus the empty prompt (one batched text-encoder call).

        ``template = "{name}"`` takes ``names`` as the prompts themselves (what
        :func:`ddcore_diffsel.prompts.class_prompts` returns). Raises ``PluginError`` when two classes'
        prompts give the same tokens (the tokenizer ignores case; prompts longer than
        ``model_max_length`` are cut): their scores could not tell the classes apart.
        """
        prompts = [template.format(name=name) for name in names]
        tokens = self.tokenizer([*prompts, ""], padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt")  # fmt: skip
        ids = tokens.input_ids
        for label in range(len(prompts)):
            same = [other for other in range(label) if torch.equal(ids[other], ids[label])]
            if same:
                raise PluginError(
                    f"the prompts {prompts[same[0]]!r} and {prompts[label]!r} give the same {ids.shape[1]} tokens "
                    f"(case is ignored, longer prompts are cut), so the prior cannot tell their classes apart "
                    f"(config key plugin.diffsel.prompt)", plugin="diffsel",
                )  # fmt: skip
        with torch.no_grad():
            hidden = self.text_encoder(ids.to(self.device))[0]
        self.prompts = prompts
        self.prompt_embeddings = hidden  # [K + 1, L, D]

    def fingerprint(self) -> dict:
        def public(config) -> dict:
            return {k: v for k, v in dict(config).items() if not k.startswith("_")}

        return {"kind": self.kind, "source": self.source, "unet": public(self.unet.config), "vae": public(self.vae.config),
                "prompts": None if self.prompt_embeddings is None else list(self.prompt_embeddings.shape),
                "prompt_texts": list(self.prompts)}  # fmt: skip

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Shape: ``[B, C, H, W]`` in ``[0, 1]`` -> latents ``[B, c, H/s, W/s]`` (s = VAE scale)."""
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        images = (images * 2 - 1).to(self.device, self.vae.dtype)
        latents = self.vae.encode(images).latent_dist.mean
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (latents - float(shift)) * float(self.vae.config.scaling_factor)

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        if self.prompt_embeddings is None:
            raise RuntimeError("set_prompts() must be called before predict()")
        null = self.prompt_embeddings.shape[0] - 1
        rows = torch.where(conditions == NULL, torch.full_like(conditions, null), conditions)
        hidden = self.prompt_embeddings[rows.to(self.prompt_embeddings.device)]
        return self.unet(noisy.to(self.unet.dtype), timesteps, encoder_hidden_states=hidden).sample


def load_latent_prior(folder: Path, source: str, device="cpu", variant: str = "") -> LatentTextPrior:
    """Assemble a :class:`LatentTextPrior` from a diffusers folder; errors name the folder and component.

    Before any weights are read, the saved configs are checked against each other
    (:func:`ddcore_diffsel.sd_configs.check_configs`) and the weight files against ``variant``
    (``plugin.diffsel.sd_variant``: ``""`` the plain files, ``"fp16"`` the ``*.fp16.*`` ones; weights
    of any variant are computed in float32). Raises ``PluginError``, one line, for all of these.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from ddcore_diffsel.sd_configs import check_configs, check_weight_files

    transformers = _transformers()
    missing = [name for name in COMPONENTS if not (folder / name).is_dir()]
    if missing:
        raise PluginError(f"{source}: not a Stable-Diffusion-style folder, missing {', '.join(missing)}/ (config key plugin.diffsel.prior)")
    weights = {"local_files_only": True, "variant": variant or None, "torch_dtype": torch.float32}
    loaders = {
        "vae": lambda: AutoencoderKL.from_pretrained(folder, subfolder="vae", **weights),
        "unet": lambda: UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **weights),
        "text_encoder": lambda: transformers.CLIPTextModel.from_pretrained(folder / "text_encoder", **weights),
        "tokenizer": lambda: transformers.CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True),
        "scheduler": lambda: DDPMScheduler.from_pretrained(folder, subfolder="scheduler", local_files_only=True),
    }
    for name, files in REQUIRED_FILES.items():  # from_pretrained would fall back to defaults for some of these
        if not any(all((folder / name / f).is_file() for f in choice) for choice in files):
            wanted = " or ".join(" + ".join(choice) for choice in files)
            raise PluginError(f"{source}: the {name}/ folder has no {wanted} (config key plugin.diffsel.prior)")
    prompt_length = check_configs(folder, source)
    check_weight_files(folder, source, variant)
    parts = {}
    verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # its load report and progress bars would print before our one line
    transformers.logging.disable_progress_bar()
    try:
        for name, load in loaders.items():
            try:
                parts[name] = load()
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if "ignore_mismatched_sizes" in first:
                    first = "its weights do not have the shapes its config.json gives"
                raise PluginError(f"{source}: cannot load the {name} ({first}) (config key plugin.diffsel.prior)") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()
    parts["tokenizer"].model_max_length = prompt_length  # resolved from the configs (absent: the encoder's positions)
    check_parts(parts, source)
    return LatentTextPrior(source=source, device=device, **parts)


def check_parts(parts: dict, source: str) -> None:
    """Refuse, in one line, components that load but do not fit together (they would fail mid-scoring).

    The same rules as :func:`ddcore_diffsel.sd_configs.check_configs`, on the loaded objects (what the
    loaders made of the configs), for callers that assemble the parts themselves."""
    vae, unet, text, tokenizer, scheduler = (parts[name] for name in COMPONENTS)

    def refuse(what: str) -> None:
        raise PluginError(f"{source}: {what} (config key plugin.diffsel.prior)")

    kind = scheduler.config.prediction_type
    if kind not in PREDICTION_TYPES:
        refuse(f"the scheduler's prediction_type {kind!r} is not one of {', '.join(PREDICTION_TYPES)}")
    if vae.config.latent_channels != unet.config.in_channels or unet.config.out_channels != unet.config.in_channels:
        refuse(f"the vae makes {vae.config.latent_channels}-channel latents, the unet takes {unet.config.in_channels} "
               f"and predicts {unet.config.out_channels} channels")  # fmt: skip
    projected = getattr(unet.config, "encoder_hid_dim", None)
    cross = unet.config.cross_attention_dim
    dims = [projected] if projected is not None else list(cross) if isinstance(cross, (list, tuple)) else [cross]
    if any(dim != text.config.hidden_size for dim in dims):
        refuse(f"the text_encoder's hidden size is {text.config.hidden_size}, the unet's cross_attention_dim "
               f"{unet.config.cross_attention_dim}")  # fmt: skip
    if len(tokenizer) > text.config.vocab_size:
        refuse(f"the tokenizer has {len(tokenizer)} tokens, the text_encoder embeds only {text.config.vocab_size}")
    positions = int(text.config.max_position_embeddings)
    if tokenizer.model_max_length > 10**6:  # no model_max_length in tokenizer_config.json: the encoder's length
        tokenizer.model_max_length = positions
    elif tokenizer.model_max_length > positions:
        refuse(f"the tokenizer pads prompts to {tokenizer.model_max_length} tokens, the text_encoder has "
               f"{positions} positions")  # fmt: skip
