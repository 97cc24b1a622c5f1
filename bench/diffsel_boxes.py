"""Do diffsel's maps find the object? Top-1 windows of each scorer against the generator's true digit box.

For the first ``--per-class`` training images of each class of a dataset that knows where its object
is (``dataset.extra["boxes"]``: ``compdd/proxy-easy``, ``compdd/proxy-hard``), this computes what
Stage I of ``dd run --plugin diffsel`` computes, with the plugin's own public functions:

- the diffusion scorer: the run's prior (``prior = "auto"``: trained or resumed in the cache exactly as
  ``dd run`` does, with ``--train-steps`` / ``--train-size``), each image's Stage-I noise
  (``derive_generator("diffsel", "stage1", i)``), its discriminativeness map
  (:meth:`~ddcore_diffsel.scorers.DiffusionScorer.maps`), every square window of side ``--windows``
  scored by the box filter and the best one kept (:func:`~ddcore_diffsel.windows.best_windows`);
- the RDED-style observer: ddcore's cached teacher scoring ``observer.crops`` random resized crops
  (:class:`~ddcore_diffsel.scorers.ObserverScorer`, the run's own crop draws), the best crop kept.

Each top-1 window is measured against the digit's box: **hit** (the window's centre lies in the
box), **IoU** (window vs box). The chance level is the same measure averaged over every candidate the
scorer chose from (all grid windows; all the observer's crops), i.e. a uniformly random candidate.
For the diffusion maps also **peak**: the map's highest pixel lies in the box, against the box's share
of the image (a random pixel's chance).

    OMP_NUM_THREADS=1 .venv/bin/python bench/diffsel_boxes.py --dataset compdd/proxy-hard --dataset compdd/proxy-easy

Prints a markdown table; ``--json FILE`` writes every row, with the prior's folder and steps.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from ddcore_diffsel.windows import best_windows, box_iou, box_means, square_windows


def xyxy_to_tlhw(boxes: torch.Tensor) -> torch.Tensor:
    """``(x0, y0, x1, y1)`` (exclusive ends, the proxy's ``extra["boxes"]``) -> diffsel's ``(top, left, height, width)``.

    Shape: ``[N, 4]`` -> ``[N, 4]`` int64.

    >>> xyxy_to_tlhw(torch.tensor([[2, 5, 10, 9]])).tolist()
    [[5, 2, 4, 8]]
    """
    x0, y0, x1, y1 = boxes.long().unbind(-1)
    return torch.stack([y0, x0, y1 - y0, x1 - x0], dim=-1)


def measure(windows: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window against its image's true box: centre inside the box, and IoU.

    The centre of ``(top, left, h, w)`` is ``(top + h/2, left + w/2)`` in continuous pixel coordinates; the
    box ``(x0, y0, x1, y1)`` covers ``[x0, x1) x [y0, y1)``.

    Shape: ``windows [N, ..., 4]`` (top, left, h, w), ``truth [N, 4]`` (x0, y0, x1, y1) ->
    ``(hit [N, ...] bool, iou [N, ...] float)``.

    >>> hit, iou = measure(torch.tensor([[0, 0, 4, 4], [4, 4, 4, 4]]), torch.tensor([[0, 0, 4, 4], [0, 0, 4, 4]]))
    >>> hit.tolist(), iou.tolist()
    ([True, False], [1.0, 0.0])
    """
    if windows.shape[0] != truth.shape[0]:
        raise ValueError(f"{windows.shape[0]} windows for {truth.shape[0]} boxes")
    extra = windows.ndim - 2
    box = truth.long().view(truth.shape[0], *([1] * extra), 4)
    cy = windows[..., 0].double() + windows[..., 2].double() / 2
    cx = windows[..., 1].double() + windows[..., 3].double() / 2
    hit = (cx >= box[..., 0]) & (cx < box[..., 2]) & (cy >= box[..., 1]) & (cy < box[..., 3])
    tlhw = xyxy_to_tlhw(box.reshape(-1, 4)).view(box.shape)
    iou = box_iou(tlhw, windows.unsqueeze(-2)).squeeze(-1)  # box [N, ..., 4] vs one window each
    return hit, iou


def top_windows(maps: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each map's best window of ``grid`` as Stage I picks it (box filter, then :func:`best_windows`), and every
    window's score.

    Shape: ``maps [B, H, W]``, ``grid [P, 4]`` -> ``(top1 [B, 4], scores [B, P])``.
    """
    scores = box_means(maps, grid)
    picked, _ = best_windows(scores, grid, 1, 1.0)
    return grid[picked[:, 0].clamp(min=0)], scores


def peak_in_box(maps: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Whether each map's highest pixel (first in row-major order on ties) lies in the true box.

    Shape: ``maps [B, H, W]``, ``truth [B, 4]`` (x0, y0, x1, y1) -> ``[B]`` bool.
    """
    w = maps.shape[-1]
    flat = maps.flatten(1).argmax(1)
    y, x = flat // w, flat % w
    return (x >= truth[:, 0]) & (x < truth[:, 2]) & (y >= truth[:, 1]) & (y < truth[:, 3])


def summary(top1: torch.Tensor, candidates: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Hit rate and mean IoU of the top-1 windows, and of a uniformly random candidate (the chance level).

    Shape: ``top1 [N, 4]``, ``candidates [N, P, 4]`` or ``[P, 4]`` (shared), ``truth [N, 4]``.
    """
    hit, iou = measure(top1, truth)
    if candidates.ndim == 2:
        candidates = candidates.unsqueeze(0).expand(truth.shape[0], -1, -1)
    all_hit, all_iou = measure(candidates, truth)
    return {"hit": hit.double().mean().item(), "iou": iou.double().mean().item(),
            "chance_hit": all_hit.double().mean().item(), "chance_iou": all_iou.double().mean().item(),
            "images": int(truth.shape[0])}  # fmt: skip


def chosen_images(dataset, per_class: int) -> list[int]:
    """The first ``per_class`` training positions of each class (as ``dd diffsel maps`` shows them)."""
    return [i for positions in dataset.indices_by_class("train") for i in positions[:per_class]]


def true_boxes(dataset, positions: list[int]) -> torch.Tensor:
    """The digit boxes of training positions (through ``dataset.train.indices`` when a split was carved)."""
    from ddcore import ConfigError

    boxes = (dataset.extra or {}).get("boxes")
    if not boxes or "train" not in boxes:
        raise ConfigError(f"dataset {dataset.name!r} has no extra['boxes']; use --dataset compdd/proxy-hard or compdd/proxy-easy")
    rows = torch.as_tensor(positions, dtype=torch.long)
    indices = getattr(dataset.train, "indices", None)
    if indices is not None:
        rows = torch.as_tensor(indices, dtype=torch.long)[rows]
    return torch.as_tensor(boxes["train"], dtype=torch.long)[rows]


def cache_dir(args) -> dict[str, str]:
    """``cache_dir`` for the run's config when ``--cache-dir`` is given (a longer prior kept apart from the shared cache)."""
    return {"cache_dir": args.cache_dir} if args.cache_dir else {}


def diffusion_rows(args, name: str) -> list[dict[str, Any]]:
    from ddcore import build_run_context
    from ddcore_diffsel.scorers import DiffusionScorer
    from ddcore_diffsel.sources import resolve_prior

    train = {"steps": args.train_steps, **({"size": args.train_size} if args.train_size else {})}
    rows = []
    for contrast in args.contrasts:
        options = {"train": train, "contrast": contrast, "timesteps": args.timesteps, "n_noise": args.n_noise}
        ctx = build_run_context({"dataset": name, "seed": args.seed, "ipc": 1, "cpu": True, "eval": {"runs": 0},
                                 **cache_dir(args), "plugin": {"diffsel": options}}, ["diffsel", "compdd"], quiet=True)  # fmt: skip
        dataset, config = ctx.dataset, ctx.plugin_config("diffsel")
        prior, resolution = resolve_prior(ctx, dataset, config)  # prior = "auto": as dd run trains or loads it
        record = ctx.records.get("diffsel/prior", {})
        side = dataset.image_shape[-1]
        positions = chosen_images(dataset, args.per_class)
        truth = true_boxes(dataset, positions)
        scorer = DiffusionScorer(prior, image_side=side, window=side, stride=side, per_image=1, max_iou=1.0,
                                 timesteps=config.timesteps, n_noise=config.n_noise, contrast=config.contrast,
                                 num_classes=dataset.num_classes, resolution=resolution, mean=dataset.mean,
                                 std=dataset.std)  # fmt: skip
        maps = []
        for start in range(0, len(positions), args.batch_size):
            chunk = positions[start : start + args.batch_size]
            images, labels = dataset.load("train", chunk)
            maps.append(scorer.maps(images, labels, [ctx.derive_generator("diffsel", "stage1", i) for i in chunk]))
        maps_t = torch.cat(maps)  # [N, H, W]
        area = ((truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1])).double() / (side * side)
        peak = peak_in_box(maps_t, truth).double().mean().item()
        for window in args.windows:
            grid = square_windows(side, side, window, max(1, window // 4))  # the run's default stride
            top1, _ = top_windows(maps_t, grid)
            rows.append({"dataset": name, "scorer": "diffusion", "contrast": contrast, "window": window,
                         "prior_steps": record.get("steps"), "prior_size": record.get("size"),
                         "prior_folder": record.get("folder"), "timesteps": list(config.timesteps),
                         "n_noise": config.n_noise, "peak": peak, "box_area": area.mean().item(),
                         "version": (dataset.extra or {}).get("version"), **summary(top1, grid, truth)})  # fmt: skip
    return rows


def observer_rows(args, name: str) -> list[dict[str, Any]]:
    from ddcore import build_run_context
    from ddcore_diffsel.features import load_teacher
    from ddcore_diffsel.scorers import ObserverScorer

    ctx = build_run_context({"dataset": name, "seed": args.seed, "ipc": 1, "cpu": True, "eval": {"runs": 0},
                             **cache_dir(args), "plugin": {"diffsel": {"scorer": "observer"}}}, ["diffsel", "compdd"], quiet=True)  # fmt: skip
    dataset, config = ctx.dataset, ctx.plugin_config("diffsel")
    teacher = load_teacher(ctx, dataset, config.teacher, config.teacher_epochs)
    side = dataset.image_shape[-1]
    obs = config.observer
    # per_image = crops and no overlap limit: every crop comes back, best first (column 0 is the run's pick)
    scorer = ObserverScorer(teacher, image_side=side, cell=side, crops=obs.crops, min_scale=obs.min_scale,
                            view=obs.view, per_image=obs.crops, max_iou=1.01, device=ctx.device)  # fmt: skip
    positions = chosen_images(dataset, args.per_class)
    truth = true_boxes(dataset, positions)
    crops = []
    for start in range(0, len(positions), args.batch_size):
        chunk = positions[start : start + args.batch_size]
        images, labels = dataset.load("train", chunk)
        boxes, _ = scorer.candidates(images, labels, [ctx.derive_generator("diffsel", "stage1", i) for i in chunk])
        crops.append(boxes)
    all_crops = torch.cat(crops)  # [N, crops, 4], best first
    return [{"dataset": name, "scorer": "observer", "contrast": "-", "window": f"RRC x{obs.crops}",
             "version": (dataset.extra or {}).get("version"), **summary(all_crops[:, 0], all_crops, truth)}]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", default=[], help="dataset with extra['boxes'] (repeatable)")
    parser.add_argument("--per-class", type=int, default=20, help="training images per class measured")
    parser.add_argument("--windows", type=int, nargs="+", default=[16, 24, 32], help="window sides (32: whole image)")
    parser.add_argument("--contrasts", nargs="+", default=["null", "others"], choices=["null", "others"])
    parser.add_argument("--timesteps", type=int, nargs="+", default=[500])
    parser.add_argument("--n-noise", type=int, default=4)
    parser.add_argument("--train-steps", type=int, default=500, help="prior steps (plugin.diffsel.train.steps)")
    parser.add_argument("--train-size", type=int, default=0, help="prior side (plugin.diffsel.train.size; 0: default)")
    parser.add_argument("--no-observer", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default="", help="ddcore cache folder (default: ddcore's)")
    parser.add_argument("--json", dest="json_out", default="")
    args = parser.parse_args()
    if args.per_class < 1:
        parser.error("--per-class must be at least 1")
    names = args.dataset or ["compdd/proxy-hard", "compdd/proxy-easy"]
    rows: list[dict[str, Any]] = []
    for name in names:
        rows += diffusion_rows(args, name)
        if not args.no_observer:
            rows += observer_rows(args, name)
    print("| dataset | scorer | prior (px, steps) | t | contrast | window | top-1 hit | chance hit | top-1 IoU | chance IoU | map peak in box (box area) |")
    print("|---|---|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        prior = f"{r['prior_size']}, {r['prior_steps']}" if r["scorer"] == "diffusion" else "teacher"
        t = ",".join(map(str, r.get("timesteps", []))) or "-"
        peak = f"{r['peak']:.2f} ({r['box_area']:.2f})" if "peak" in r else "-"
        print(f"| {r['dataset']} | {r['scorer']} | {prior} | {t} | {r['contrast']} | {r['window']} | {r['hit']:.2f} | "
              f"{r['chance_hit']:.2f} | {r['iou']:.3f} | {r['chance_iou']:.3f} | {peak} |")  # fmt: skip
    if args.json_out:
        from ddcore.atomic import write_json

        write_json(args.json_out, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
