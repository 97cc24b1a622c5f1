"""``dd export RUN_DIR --format pt|imagefolder|ddranking --out DIR``: a run's distilled set as plain files."""

from __future__ import annotations

from pathlib import Path

import click

FORMATS = ("pt", "imagefolder", "ddranking")  # ddcore.export.FORMATS (not imported here: dd --help stays torch-free)


def _floats(option: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        from ddcore.errors import ConfigError

        raise ConfigError(f"{option} {text!r}: expected comma-separated numbers, e.g. 0.4914,0.4822,0.4465") from None


@click.command(name="export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="pt: images.pt/labels.pt/lr.pt tensors; imagefolder: PNGs in class folders; ddranking: pt + a DD-Ranking YAML.")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write (new or empty; written atomically).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in --out (never a folder holding anything else).")
@click.option("--mean", metavar="M[,M,M]", help="Re-normalise the tensors to this mean (pt, ddranking); default: the dataset's.")
@click.option("--std", metavar="S[,S,S]", help="... and this std (with --mean).")
@click.option("--rgb", is_flag=True, help="Repeat a grey set's channel to 3 channels.")
@click.option("--class-folders", type=click.Choice(("names", "index")), help="imagefolder: folders named by class (default) or 00000, 00001, ... (DD-Ranking).")
def export_command(run_dir: Path, fmt: str, out: Path, overwrite: bool, mean, std, rgb: bool, class_folders) -> None:
    """Export the distilled set of RUN_DIR for other tools; always with a meta.json (classes, normalisation,
    evaluation protocol, ddcore's accuracies)."""
    from ddcore.export import export_run
    from ddcore_cli.output import stdout

    result = export_run(run_dir, out, fmt, overwrite=overwrite, mean=_floats("--mean", mean), std=_floats("--std", std),
                        rgb=rgb, class_folders=class_folders)  # fmt: skip
    meta = result.meta
    console = stdout()
    console.print(f"exported {meta['num_images']} images ({meta['labels']} labels, {meta['num_classes']} classes, "
                  f"shape {meta['image_shape']}) as {fmt} to {result.out}", highlight=False, soft_wrap=True)  # fmt: skip
    if "mean" in meta:
        console.print(f"normalisation of images.pt: mean {meta['mean']}, std {meta['std']}", highlight=False, soft_wrap=True)
    if meta.get("lr") is not None:
        where = "lr.pt" if "lr.pt" in result.files else "meta.json 'lr'"
        console.print(f"learned lr ({where}): {meta['lr']:g}", highlight=False)
    if meta.get("empty_folders"):
        console.print(f"class folders left empty (no image has that label; soft labels: as argmax): "
                      f"{', '.join(meta['empty_folders'])}; torchvision's ImageFolder needs allow_empty=True for them",
                      highlight=False, soft_wrap=True)  # fmt: skip
    clipped = meta.get("clipped")
    if clipped is not None:
        console.print(f"clipped to [0, 1]: {clipped['clipped']} of {clipped['values']} pixel values "
                      f"({clipped['below_0']} below 0, {clipped['above_1']} above 1)", highlight=False)  # fmt: skip
    if meta.get("run_status") != "complete":
        console.print(f"note: the run is {meta.get('run_status')!r}, not complete; meta.json has the accuracies it had "
                      f"so far ({'none' if not (meta['accuracies'] or {}).get('metrics') else 'metrics.json'})",
                      highlight=False, soft_wrap=True)  # fmt: skip
    for line in (meta.get("ddranking") or {}).get("differences", []):
        console.print(f"DD-Ranking config differs: {line}", highlight=False, soft_wrap=True)
    console.print(f"written: {len(result.files)} files, meta in {result.out / 'meta.json'}", highlight=False)
