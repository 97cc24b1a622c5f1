"""The ``dd_select`` / ``dd_initialize`` work: Stage I (cached pool), Stage II (ranking), patches, assembly.

Selection contract (what ``dd_select`` returns): per class, ``ipc * factor^2`` patches in placement
order, each cut at cell size (``image side // factor``) and zoomed to the image size by pixel
repetition (lossless), class-major; ``indices`` are the source images when every patch is a whole
training image (``factor = 1`` and full-size windows), else ``None``. ``dd_initialize`` (this
plugin's) undoes the zoom and stitches ``factor x factor`` cells per image.
"""

from __future__ import annotations

from typing import Any

import torch

from ddcore import ConfigError, DistilledSet, PluginError, Selection
from ddcore.atomic import write_json
from ddcore.tm.experts import dataset_identity
from ddcore_diffsel.assemble import placement_order, stitch, unzoom, zoom
from ddcore_diffsel.config import DiffselConfig
from ddcore_diffsel.features import load_teacher, patch_features
from ddcore_diffsel.pixel_prior import state_sha
from ddcore_diffsel.pool import Pool, cached_pool, score_pool
from ddcore_diffsel.ranking import rank_class
from ddcore_diffsel.windows import crop_resize

METHOD = "diffsel"
SELECTION_FILE = "diffsel_selection.json"


def resolved_factor(config: DiffselConfig, image_side: int) -> int:
    """``factor``, or 2 for images of 64 px and more and 1 below (``factor = 0``)."""
    return config.factor or (2 if image_side >= 64 else 1)


def geometry(config: DiffselConfig, image_side: int) -> tuple[int, int, int, int]:
    """``(factor, cell, window, stride)``, checked: one-line errors name the key to change."""
    factor = resolved_factor(config, image_side)
    if image_side % factor:
        raise PluginError(f"image side {image_side} is not divisible by plugin.diffsel.factor = {factor}")
    cell = image_side // factor
    window = config.window or cell
    if window > image_side:
        raise PluginError(f"plugin.diffsel.window = {window} is larger than the {image_side} px images")
    stride = config.stride or max(1, window // 4)
    return factor, cell, window, stride


def refuse_whitened(dataset, what: str) -> None:
    """Refuse a ZCA-whitened dataset (``zca = true``) for ``what``: diffsel cuts, resizes and stitches patches
    and scores them as pixels, none of which a whitening over the whole image survives. One-line
    :class:`~ddcore.ConfigError` naming the key (``dd run`` refuses earlier, through the plugin's
    ``run_requirements``; this guards direct callers)."""
    if getattr(dataset, "whitening", None) is not None:
        raise ConfigError(f"{what} works on pixels and image patches, but dataset {dataset.name!r} is ZCA-whitened "
                          "(config key zca); set zca = false or drop --plugin diffsel")  # fmt: skip


def _teacher(ctx, dataset, config: DiffselConfig):
    key = "diffsel/teacher-module"
    if key not in ctx.stash:
        ctx.stash[key] = load_teacher(ctx, dataset, config.teacher, config.teacher_epochs)
    return ctx.stash[key]


def build_selection(ctx, dataset, ipc: int, config: DiffselConfig) -> Selection:
    """Stage I (or its cached pool), Stage II per class, the winners' patches as a :class:`Selection`."""
    refuse_whitened(dataset, "plugin diffsel's selection")
    side = dataset.image_shape[-1]
    factor, cell, window, stride = geometry(config, side)
    needed = ipc * factor * factor
    expected = min(config.pool_per_class, min(dataset.class_counts("train"))) * config.per_image
    if expected < needed:
        raise PluginError(
            f"ipc {ipc} x factor^2 = {needed} patches per class, but the pool keeps at most {expected}; "
            "raise plugin.diffsel.pool_per_class or plugin.diffsel.per_image"
        )
    features_kind = config.resolved_features()
    ranking = config.resolved_ranking()
    contents: dict[str, Any] = {
        "dataset": dataset_identity(dataset, ctx.config.data_root or None), "seed": ctx.seed,
        "scorer": config.scorer, "pool_per_class": config.pool_per_class, "batch_size": config.batch_size,
        "cell": cell, "window": window, "stride": stride, "per_image": config.per_image, "max_iou": config.max_iou,
        "features": features_kind,
    }  # fmt: skip
    teacher = _teacher(ctx, dataset, config) if features_kind == "teacher" or config.scorer == "observer" else None
    if teacher is not None:
        contents["teacher"] = {"spec": config.teacher, "sha": state_sha(teacher.state_dict())}
    prior = None
    if config.scorer == "diffusion":
        from ddcore_diffsel.scorers import DiffusionScorer
        from ddcore_diffsel.sources import check_sequence, resolve_prior

        prior, resolution = resolve_prior(ctx, dataset, config)
        check_sequence(config.timesteps, prior.num_train_timesteps, "plugin.diffsel.timesteps")
        contents.update({"prior": prior.fingerprint(), "resolution": resolution, "timesteps": config.timesteps,
                         "n_noise": config.n_noise, "contrast": config.contrast, "prompt": config.prompt})  # fmt: skip
        scorer = DiffusionScorer(
            prior, image_side=side, window=window, stride=stride, per_image=config.per_image, max_iou=config.max_iou,
            timesteps=config.timesteps, n_noise=config.n_noise, contrast=config.contrast,
            num_classes=dataset.num_classes, resolution=resolution, mean=dataset.mean, std=dataset.std,
        )  # fmt: skip
    else:
        from ddcore_diffsel.scorers import ObserverScorer

        obs = config.observer
        contents.update({"observer": {"crops": obs.crops, "min_scale": obs.min_scale, "view": obs.view}})
        scorer = ObserverScorer(teacher, image_side=side, cell=cell, crops=obs.crops, min_scale=obs.min_scale,
                                view=obs.view, per_image=config.per_image, max_iou=config.max_iou, device=ctx.device)  # fmt: skip
    if features_kind == "latents" and prior is None:
        raise PluginError("plugin.diffsel.features = 'latents' needs the diffusion scorer (it encodes with the prior)")

    def embed(patches: torch.Tensor) -> torch.Tensor:
        if features_kind == "latents":
            from ddcore.data.base import denormalize

            return patch_features("latents", denormalize(patches, dataset.mean, dataset.std).clamp(0, 1), side,
                                  prior=prior, device=ctx.device)  # fmt: skip
        return patch_features(features_kind, patches, side, teacher=teacher, device=ctx.device)

    def build(meta: dict[str, Any]) -> Pool:
        return score_pool(ctx, dataset, scorer, embed, per_class=config.pool_per_class,
                          batch_size=config.batch_size, cell=cell, meta=meta)  # fmt: skip

    pool, reused, path = cached_pool(ctx, contents, build, config.reuse_pool)
    ctx.record("diffsel/pool", {"path": str(path), "key": pool.meta.get("key"), "reused": reused, "candidates": len(pool.scores)})
    return assemble_selection(ctx, dataset, pool, ipc, factor, cell, ranking, config.assembly, reused)


def choose_winners(pool: Pool, label: int, count: int, ranking: str, assembly: str, seed: int) -> torch.Tensor:
    """Pool positions of class ``label``'s ``count`` winners, in placement order. Shape: ``-> [count]`` int64."""
    positions = pool.of_class(label)
    if positions.numel() < count:
        raise PluginError(
            f"class {label} kept {positions.numel()} candidates, fewer than the {count} patches needed; "
            "raise plugin.diffsel.pool_per_class or plugin.diffsel.per_image"
        )
    local = rank_class(pool.features[positions], pool.scores[positions], count, ranking, seed)
    winners = positions[local]
    return winners[placement_order(pool.scores[winners], assembly)]


def assemble_selection(ctx, dataset, pool: Pool, ipc: int, factor: int, cell: int, ranking: str, assembly: str,
                       reused: bool) -> Selection:  # fmt: skip
    """Stage II over the pool and the winners' patches (zoomed to the image size) as a Selection."""
    count = ipc * factor * factor
    chosen = [choose_winners(pool, c, count, ranking, assembly, ctx.derive_seed("diffsel", "kmeans", c) % 2**31)
              for c in range(dataset.num_classes)]  # fmt: skip
    winners = torch.cat(chosen)
    images, _ = dataset.load("train", pool.index[winners].tolist())
    patches = crop_resize(images, pool.boxes[winners], cell)
    side = dataset.image_shape[-1]
    whole = bool(factor == 1 and (pool.boxes[winners][:, 2:] == side).all())
    provenance = {
        "index": pool.index[winners].tolist(), "boxes": pool.boxes[winners].tolist(), "scores": pool.scores[winners].tolist(),
    }  # fmt: skip
    ctx.stash["diffsel/provenance"] = provenance
    if ctx.out_dir is not None and ctx.is_main_process:
        write_json(ctx.out_dir / SELECTION_FILE, {"ipc": ipc, "factor": factor, "ranking": ranking, "assembly": assembly,
                                                   "pool": pool.meta.get("key"), **provenance})  # fmt: skip
    return Selection(
        images=zoom(patches, factor),
        labels=pool.labels[winners].clone(),
        indices=pool.index[winners].clone() if whole else None,
        meta={"method": METHOD, "ipc": ipc, "factor": factor, "cell": cell, "ranking": ranking, "assembly": assembly,
              "pool": pool.meta.get("key"), "pool_reused": reused},  # fmt: skip
    )


def initial_set(ctx, selection: Selection, config: DiffselConfig) -> DistilledSet | None:
    """Stitch this plugin's selection into ``ipc`` images per class; ``None`` for anyone else's selection."""
    meta = selection.meta
    if meta.get("method") != METHOD:
        return None
    dataset = ctx.dataset
    ipc, factor, assembly = int(meta["ipc"]), int(meta["factor"]), meta["assembly"]
    count = ipc * factor * factor
    patches = unzoom(selection.images, factor)
    images, labels = [], []
    for c in range(dataset.num_classes):
        mine = torch.nonzero(selection.labels == c).flatten()
        if mine.numel() != count:
            raise PluginError(f"the selection holds {mine.numel()} patches of class {c}, expected {count}")
        images.append(stitch(patches[mine], ipc, factor, assembly))
        labels.append(torch.full((ipc,), c, dtype=torch.long))
    images_t = torch.cat(images)
    labels_t: torch.Tensor = torch.cat(labels)
    if config.labels == "teacher":
        teacher = _teacher(ctx, dataset, config)
        with torch.no_grad():
            labels_t = torch.cat([teacher(chunk.to(ctx.device)).float().cpu() for chunk in images_t.split(256)])
    return DistilledSet(
        images=images_t,
        labels=labels_t,
        class_names=list(dataset.class_names),
        mean=tuple(dataset.mean),
        std=tuple(dataset.std),
        meta={"diffsel": {k: meta[k] for k in ("ipc", "factor", "ranking", "assembly", "pool")}, "labels": config.labels},
    )
