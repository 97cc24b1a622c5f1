"""``dd compdd ...``: list the subsets, measure complexity, build easy/hard subsets, report easy vs hard."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import click

from ddcore import ConfigError, DDError


@click.group(name="compdd")
def compdd_group() -> None:
    """Comp-DD: the complex-dataset-distillation benchmark (datasets compdd/...)."""


# ----------------------------------------------------------------------------------------------
# dd compdd subsets
# ----------------------------------------------------------------------------------------------


@compdd_group.command(name="subsets")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def subsets_command(as_json: bool) -> None:
    """List the 16 subsets: ImageNet indices, wnids, class names and any defect of the published list."""
    from rich.console import Console
    from rich.table import Table

    from ddcore_compdd.subsets import SUBSETS, resolve_subset

    infos = [resolve_subset(name) for name in SUBSETS]
    if as_json:
        click.echo(json.dumps([{**info.__dict__} for info in infos], indent=2))
        return
    table = Table(title="Comp-DD subsets (label order)", title_justify="left")
    for column in ("dataset", "classes", "ImageNet indices", "notes"):
        table.add_column(column)
    for info in infos:
        table.add_row(f"compdd/{info.name}", ", ".join(info.class_names), ",".join(map(str, info.indices)), "; ".join(info.defects))
    Console().print(table)


# ----------------------------------------------------------------------------------------------
# Shared: a run context for a dataset, and complexity over it
# ----------------------------------------------------------------------------------------------


def dataset_context(dataset: str, plugins: tuple[str, ...], common: dict[str, Any]):
    """The run context of a validated run whose dataset is built: ``ctx`` for teachers, caches, devices, records."""
    from ddcore import build_run_context
    from ddcore_compdd import plugin

    config: dict[str, Any] = {"dataset": dataset, "ipc": 1, "eval": {"runs": 0}}
    for key in ("data_root", "image_size", "workers", "cache_dir", "seed", "cpu"):
        value = common.get(key)
        if value not in (None, False):
            config[key] = str(value) if isinstance(value, Path) else value
    extra = [p for p in plugins if p != "compdd"]
    return build_run_context(config, [plugin, *extra], quiet=common.get("quiet", True))


#: The miniature's default CAM layer: the 4x4 block of the ConvNetD5 teacher.
MINI_LAYER = "features.3.2"


def teacher_defaults(dataset) -> dict[str, Any]:
    """How the default classifier is trained. The miniature: ConvNetD5 width 32 (its last block pools to
    1x1, so, unlike ConvNetD3's flattening head, its Grad-CAM follows the digit wherever it is), Adam
    (lr 1e-3, batch 64), 20 epochs. Other datasets: the run's network and the preset's full-data epochs."""
    from ddcore.models import ModelSpec

    if dataset.extra.get("compdd_mini"):
        return {"model": ModelSpec(name="convnet", width=32, depth=5), "epochs": 20, "optimizer": "adam", "lr": 1e-3, "batch_size": 64}
    return {}


def choose_classifier(ctx, arch: str | None, weights: Path | None, teacher_epochs: int):
    """``(model, adapter, description)``: a torchvision model on local weights, or the dataset's teacher."""
    from ddcore.teacher import trained_teacher
    from ddcore.weights import load_torchvision
    from ddcore_compdd.scoring import InputAdapter

    dataset = ctx.dataset
    if bool(arch) != bool(weights):
        raise ConfigError("give both --arch and --weights for a torchvision classifier, or neither for a trained teacher")
    if arch:
        model = load_torchvision(arch, weights, option="--arch/--weights")
        adapter = InputAdapter(dataset.mean, dataset.std, rgb=True, size=224, imagenet=True)
        return model, adapter, {"kind": "torchvision", "arch": arch, "weights": str(weights), "input_size": 224}
    options = teacher_defaults(dataset)
    if teacher_epochs:
        options["epochs"] = teacher_epochs
    model = trained_teacher(ctx, dataset, **options)
    teacher = next((v for k, v in ctx.records.items() if k.startswith("teachers/")), {})
    return model, None, {"kind": "teacher", **teacher}


def measure(ctx, options, arch, weights, teacher_epochs):
    """Complexity of ``ctx.dataset`` with the chosen classifier: a :class:`ComplexityResult`."""
    from ddcore_compdd.scoring import ComplexityResult, options_dict, score_dataset

    model, adapter, description = choose_classifier(ctx, arch, weights, teacher_epochs)
    if options.layer is None and not arch and ctx.dataset.extra.get("compdd_mini"):
        options = dataclasses.replace(options, layer=MINI_LAYER)
    generator = ctx.derive_generator("compdd", "complexity")
    scores, labels, indices = score_dataset(model, ctx.dataset, options, ctx.device, generator, adapter)
    empty = [name for label, name in enumerate(ctx.dataset.class_names) if not bool((labels == label).any())]
    if empty:  # a class's complexity is the mean over its images: undefined without any (never written as NaN)
        raise ConfigError(f"{ctx.dataset.name}: no images of class {empty[0]!r} were scored ({len(empty)} such classes); "
                          "give every class training images (option --dataset / --data-root)")  # fmt: skip
    return ComplexityResult(ctx.dataset.name, list(ctx.dataset.class_names), scores, labels, indices, description, options_dict(options))


def common_options(function):
    """Options shared by the commands that build datasets and classifiers."""
    decorators = [
        click.option("--plugin", "plugins", multiple=True, metavar="NAME|FILE.py", help="Activate another plugin (for its datasets)."),
        click.option("--data-root", type=click.Path(path_type=Path), help="Dataset folder (your ImageNet root for compdd/<subset>)."),
        click.option("--image-size", type=int, help="Image side (default: the dataset's own; 128 for the ImageNet subsets)."),
        click.option("--workers", type=int, help="Loader / decoding worker processes (default 2)."),
        click.option("--cache-dir", type=click.Path(path_type=Path), help="Cache folder (default $DDCORE_CACHE or ~/.cache/ddcore)."),
        click.option("--seed", type=int, help="Seed of the teacher and of Smooth Grad-CAM++'s noise (default 0)."),
        click.option("--arch", help="torchvision architecture of the classifier (e.g. resnet18); needs --weights."),
        click.option("--weights", type=click.Path(path_type=Path), help="Local weights file for --arch (never downloaded)."),
        click.option("--teacher-epochs", type=click.IntRange(min=0), default=0, help="Epochs of the default trained teacher (0: its default)."),
        click.option("--layer", help="CAM layer, a name from model.named_modules() (default: layer4 / the last conv block)."),
        click.option("--method", type=click.Choice(["gradcam", "smooth_gradcampp"]), default="gradcam", show_default=True),
        click.option("--threshold", type=float, default=0.5, show_default=True, help="Active pixel: map >= threshold."),
        click.option("--strict", is_flag=True, help="Count map > threshold (the release) instead of >= (the paper)."),
        click.option("--target", type=click.Choice(["predicted", "label"]), default="predicted", show_default=True, help="Class each map explains."),
        click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True),
        click.option("--per-class", type=int, default=0, show_default=True, help="Score at most this many images per class (0: all)."),
        click.option("--batch-size", type=int, default=128, show_default=True, help="Images per Grad-CAM pass."),
        click.option("--cpu", is_flag=True, help="Run on the CPU even when a GPU is present."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def scoring_options(flags: dict[str, Any]):
    from ddcore_compdd.scoring import ScoringOptions

    if not 0.0 <= flags["threshold"] <= 1.0:
        raise ConfigError(f"--threshold must lie in [0, 1], got {flags['threshold']}")
    if flags["per_class"] < 0 or flags["batch_size"] < 1:
        raise ConfigError("--per-class must be >= 0 and --batch-size >= 1")
    return ScoringOptions(
        layer=flags["layer"], method=flags["method"], threshold=flags["threshold"], strict=flags["strict"],
        target=flags["target"], split=flags["split"], per_class=flags["per_class"], batch_size=flags["batch_size"],
    )  # fmt: skip


def _write_outputs(out: Path, files: dict[str, str]) -> list[Path]:
    from ddcore.atomic import write_text

    written = []
    for name, text in files.items():
        write_text(out / name, text)
        written.append(out / name)
    return written


# ----------------------------------------------------------------------------------------------
# dd compdd complexity
# ----------------------------------------------------------------------------------------------


@compdd_group.command(name="complexity")
@click.option("--dataset", "datasets", multiple=True, required=True, help="Registered dataset (repeatable), e.g. compdd/mini-hard.")
@common_options
@click.option("--out", type=click.Path(path_type=Path), default=Path("compdd-complexity"), show_default=True, help="Folder for complexity.json and complexity.csv.")
@click.option("--per-image", is_flag=True, help="Also store every image's score in complexity.json.")
def complexity_command(datasets, plugins, out, per_image, **flags) -> None:
    """Grad-CAM complexity per class (and per dataset) of one or more datasets; writes a table and JSON."""
    from rich.console import Console
    from rich.table import Table

    options = scoring_options(flags)
    results = []
    for name in datasets:
        ctx = dataset_context(name, plugins, flags)
        results.append(measure(ctx, options, flags["arch"], flags["weights"], flags["teacher_epochs"]))
    table = Table(title="Comp-DD complexity (higher = smaller discriminative area)", title_justify="left")
    for column, justify in (("dataset", "left"), ("class", "left"), ("images", "right"), ("complexity %", "right"), ("std", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", "label", "class", "images", "complexity", "std"])
    for result in results:
        for row in result.per_class():
            table.add_row(result.dataset, row["class"], str(row["images"]), f"{100 * row['complexity']:.2f}", f"{100 * row['std']:.2f}")
            writer.writerow([result.dataset, row["label"], row["class"], row["images"], f"{row['complexity']:.6f}", f"{row['std']:.6f}"])
        table.add_row(result.dataset, "[b]mean of classes[/b]", str(len(result.scores)), f"[b]{100 * result.mean():.2f}[/b]", "", end_section=True)
    payload = {"datasets": [result.to_dict(per_image) for result in results]}
    written = _write_outputs(out, {"complexity.json": json.dumps(payload, indent=2, allow_nan=False) + "\n", "complexity.csv": buffer.getvalue()})
    console = Console()
    console.print(table)
    console.print("written: " + ", ".join(map(str, written)), soft_wrap=True)


# ----------------------------------------------------------------------------------------------
# dd compdd build
# ----------------------------------------------------------------------------------------------


def scores_from_file(path: Path, dataset) -> list[float]:
    """Per-class complexity of ``dataset`` from a ``complexity.json`` written by ``dd compdd complexity``."""
    from ddcore.artifacts import read_json

    data = read_json(path, "complexity file")
    for entry in data.get("datasets", []):
        if entry.get("dataset") == dataset.name:
            by_class = {row["class"]: row["complexity"] for row in entry.get("classes", [])}
            missing = [name for name in dataset.class_names if name not in by_class]
            if missing:
                raise ConfigError(f"{path} lacks classes of {dataset.name}: {', '.join(missing[:5])} (option --scores)")
            return [float(by_class[name]) for name in dataset.class_names]
    raise ConfigError(f"{path} has no scores for {dataset.name} (option --scores); run dd compdd complexity --dataset {dataset.name}")


@compdd_group.command(name="build")
@click.option("--dataset", required=True, help="The dataset whose classes are grouped (imagefolder, compdd/..., ...).")
@click.option("--categories", type=click.Path(path_type=Path, dir_okay=False), required=True, help="TOML/JSON file: category = [class, ...].")
@click.option("--size", type=int, default=10, show_default=True, help="Classes per easy and per hard subset.")
@click.option("--scores", type=click.Path(path_type=Path, dir_okay=False), help="Reuse a complexity.json instead of measuring again.")
@common_options
@click.option("--out", type=click.Path(path_type=Path), default=Path("compdd-build"), show_default=True, help="Folder for subsets.json / subsets.md.")
@click.option("--materialize", is_flag=True, help="Also write each subset as an imagefolder tree of symlinks under --out.")
def build_command(dataset, categories, size, scores, plugins, out, materialize, **flags) -> None:
    """Rank each category's classes by complexity and emit easy and hard subsets (a Comp-DD of your data)."""
    from rich.console import Console
    from rich.table import Table

    from ddcore_compdd.build import build_subsets, class_folders, materialize as write_trees, read_categories, resolve_categories

    if size < 1:
        raise ConfigError(f"--size must be at least 1, got {size}")
    groups = read_categories(categories)
    options = scoring_options(flags)
    ctx = dataset_context(dataset, plugins, flags)
    labels = resolve_categories(groups, ctx.dataset)
    if materialize:
        class_folders(ctx.dataset)  # fails now, before any scoring, if the dataset has no class folders
    if scores is not None:
        class_scores, source = scores_from_file(scores, ctx.dataset), {"kind": "file", "path": str(scores)}
    else:
        result = measure(ctx, options, flags["arch"], flags["weights"], flags["teacher_epochs"])
        class_scores = [row["complexity"] for row in result.per_class()]
        source = {"kind": "measured", "classifier": result.classifier, "options": result.options}
    subsets = build_subsets(labels, class_scores, list(ctx.dataset.class_names), size)
    lines = ["| subset | mean complexity % | classes (complexity %) |", "|---|---:|---|"]
    table = Table(title=f"easy/hard subsets of {ctx.dataset.name}", title_justify="left")
    for column in ("subset", "mean complexity %", "classes"):
        table.add_column(column)
    for subset in subsets:
        classes = ", ".join(f"{c} ({100 * v:.1f})" for c, v in zip(subset["classes"], subset["complexity"]))
        lines.append(f"| {subset['name']} | {100 * subset['mean_complexity']:.2f} | {classes} |")
        table.add_row(subset["name"], f"{100 * subset['mean_complexity']:.2f}", classes)
    payload = {"dataset": ctx.dataset.name, "size": size, "scores": source, "subsets": subsets}
    written = _write_outputs(out, {"subsets.json": json.dumps(payload, indent=2, allow_nan=False) + "\n", "subsets.md": "\n".join(lines) + "\n"})
    if materialize:
        written += write_trees(subsets, ctx.dataset, out)
    console = Console()
    console.print(table)
    console.print("written: " + ", ".join(map(str, written)), soft_wrap=True)


# ----------------------------------------------------------------------------------------------
# dd compdd report
# ----------------------------------------------------------------------------------------------


@compdd_group.command(name="report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("compdd-report"), show_default=True, help="Folder for report.md, report.json and report.png.")
def report_command(run_dirs, out) -> None:
    """Easy vs hard accuracy (mean, std) and the gap per subset and method, from finished runs; table + PNG chart.

    Only runs measured by the same evaluation protocol (evaluator, network, epochs, recipe, labels, image
    shape: read from each manifest) share a row; others are shown apart, with what differs, and no gap.
    """
    from ddcore.atomic import write_json
    from ddcore_compdd.chart import draw_chart
    from ddcore_compdd.report import build_report, markdown, read_run, to_json

    records = [read_run(path) for path in run_dirs]
    report = build_report(records)
    if not report:
        raise DDError("no runs to report")
    text = markdown(report)
    written = _write_outputs(out, {"report.md": text})
    write_json(out / "report.json", to_json(report, records))
    draw_chart(report, out / "report.png")
    click.echo(text)
    click.echo("written: " + ", ".join(map(str, [*written, out / "report.json", out / "report.png"])))
