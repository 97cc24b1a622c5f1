#!/usr/bin/env python
"""How far apart EDF's two CAM variants are: ``paper`` (ddcore's formulas) and ``torchcam`` (torchcam 0.5.0's
order of operations, the EDF release's library), on the same images with the same noise draws.

    OMP_NUM_THREADS=1 .venv/bin/python bench/edf_cam_variants.py                        # digits, 100 training images
    OMP_NUM_THREADS=1 .venv/bin/python bench/edf_cam_variants.py --dataset compdd/mini-hard --plugin compdd

The CAM model is EDF's ``cam_model = "teacher"``: the run's network trained on the whole training split for
the dataset's full-data epochs (cached by :func:`ddcore.teacher.trained_teacher`; ``--epochs`` overrides). The
images are ``--images`` training images drawn with ``--seed`` (never test images). For each method and layer,
per image: the Pearson correlation of the two maps (over the images where both maps vary), the IoU of DAE's emphasised masks (``M >= mean(M)`` and
``M > 0``, the rule of ``ddcore_edf.dae``), the mean absolute difference, and each variant's share of
emphasised pixels; the means over images are printed as one table (the teacher's test accuracy with it,
reported only).
"""

from __future__ import annotations

import argparse

import torch


def per_image_stats(paper: torch.Tensor, torchcam: torch.Tensor) -> dict[str, float]:
    """Means over images of the correlation (over images whose two maps both vary; ``constant`` counts the
    others: an all-zero map, which both variants give alike), IoU of the emphasised masks (1 when both are
    empty), |difference| and each variant's share of emphasised pixels."""
    from ddcore_edf.dae import emphasised

    a, b = paper.flatten(1), torchcam.flatten(1)
    a0, b0 = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    varies = (a0.norm(dim=1) > 0) & (b0.norm(dim=1) > 0)
    correlation = (a0 * b0).sum(1)[varies] / (a0.norm(dim=1) * b0.norm(dim=1))[varies]
    ma, mb = emphasised(paper, 0.0).flatten(1), emphasised(torchcam, 0.0).flatten(1)
    union = (ma | mb).sum(1).float()
    iou = torch.where(union > 0, (ma & mb).sum(1).float() / union.clamp_min(1), torch.ones_like(union))
    return {
        "corr": float(correlation.mean()) if varies.any() else float("nan"), "constant": int((~varies).sum()),
        "iou": float(iou.mean()), "absdiff": float((a - b).abs().mean()),
        "active_paper": float(ma.float().mean()), "active_torchcam": float(mb.float().mean()),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--plugin", action="append", default=[], help="plugins the dataset needs (compdd for compdd/*)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=0, help="teacher epochs (0: the dataset's full-data epochs)")
    parser.add_argument("--noise", type=float, default=0.3, help="Smooth Grad-CAM++'s noise std (0: isolates alpha and the order)")
    parser.add_argument("--layers", default="", help="comma-separated CAM layers ('' : the default layer and the one before)")
    args = parser.parse_args()

    from ddcore.cam import default_layer_name, grad_cam
    from ddcore.standalone import build_run_context
    from ddcore.teacher import trained_teacher
    from ddcore_edf.cam_model import teacher_options
    from ddcore_edf.config import EDFConfig

    ctx = build_run_context({"dataset": args.dataset, "seed": args.seed, "workers": 0}, args.plugin)
    options = teacher_options(ctx, EDFConfig(cam_model="teacher", cam_teacher_epochs=args.epochs))
    teacher = trained_teacher(ctx, **options)
    test_acc = next(v["test_acc"] for k, v in ctx.records.items() if k.startswith("teachers/"))
    dataset = ctx.dataset
    generator = torch.Generator().manual_seed(args.seed)
    count = len(dataset.train)
    indices = torch.randperm(count, generator=generator)[: args.images].tolist()
    images, labels = dataset.load("train", indices)
    default = default_layer_name(teacher)
    if args.layers:
        layers = args.layers.split(",")
    else:
        block = int(default.split(".")[1])
        layers = [default, f"features.{block - 1}.2"] if default.startswith("features.") and block > 0 else [default]
    print(f"# {args.dataset}: {len(indices)} training images (seed {args.seed}); CAM model: teacher "
          f"{options['model'].name} {options['epochs']} epochs, test acc {test_acc:.2f}% (reported only); noise {args.noise}")  # fmt: skip
    print("| method | layer | map | corr (constant maps) | IoU of emphasised masks | mean abs diff | emphasised paper / torchcam |")
    print("|---|---|---|---|---|---|---|")
    seeds = [ctx.derive_seed("edf", "cam", 0, i) for i in range(len(indices))]
    for method in ("smooth_gradcampp", "gradcam"):
        for layer in layers:
            maps = {variant: grad_cam(teacher, layer, images, labels, method=method, seeds=seeds, noise=args.noise,
                                       variant=variant)
                    for variant in ("paper", "torchcam")}  # fmt: skip
            with torch.no_grad():
                shape = teacher_layer_shape(teacher, layer, images[:1])
            s = per_image_stats(maps["paper"], maps["torchcam"])
            print(f"| {method} | {layer} | {shape} | {s['corr']:.3f} ({s['constant']}) | {s['iou']:.3f} | {s['absdiff']:.3f} | "
                  f"{s['active_paper']:.3f} / {s['active_torchcam']:.3f} |")  # fmt: skip


def teacher_layer_shape(model: torch.nn.Module, layer: str, example: torch.Tensor) -> str:
    """``"h x w"`` of ``layer``'s output for ``example``."""
    captured = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, out: captured.append(out.shape))
    try:
        model(example)
    finally:
        handle.remove()
    return f"{captured[0][-2]}x{captured[0][-1]}"


if __name__ == "__main__":
    main()
