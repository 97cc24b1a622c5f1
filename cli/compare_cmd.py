"""``dd compare RUN_DIR...``: finished runs side by side, grouped by method, dataset and IPC, paired by seed."""

from __future__ import annotations

from pathlib import Path

import click

HOW = (
    "Δ: group - baseline, paired by seed: with two common seeds or more, the mean over seeds of the runs' mean "
    "accuracies' difference and its 95% Student-t interval (pairs - 1 degrees of freedom); with one common seed, "
    "over that seed's evaluation networks paired by index (evaluation noise only). acc: mean ± population std "
    "over all networks of the group; seed sd: sample std of the runs' means."
)


def _output(value: str | None, option: str) -> Path | None:
    """``None`` for stdout (``-``) or no value; else the file, refused when it cannot be written there."""
    from ddcore.errors import ConfigError

    if value is None or value == "-":
        return None
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"{option} {value} is a folder; give a file name")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{option} {value}: {blocking} is a file, not a folder")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {value}: the folder {path.parent} does not exist")
    return path


@click.command(name="compare")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...")
@click.option("--baseline", metavar="GROUP", help="The group every other group is compared with (a group label or method; "
              "default: the selection-only group 'none' if present, else the first group given).")  # fmt: skip
@click.option("--evaluator", default="eval", show_default=True, help="Whose accuracies: <evaluator>/acc_runs in metrics.json.")
@click.option("--json", "json_out", metavar="FILE|-", help="Write the comparison as JSON to FILE, or to stdout with '-'.")
@click.option("--csv", "csv_out", metavar="FILE|-", help="Write one CSV row per group to FILE, or to stdout with '-'.")
@click.option("--png", "png_out", metavar="FILE", help="Draw a bar chart (mean accuracy ± std per group) to FILE.")
def compare_command(run_dirs, baseline, evaluator, json_out, csv_out, png_out) -> None:
    """Compare finished runs: mean ± std per group and the paired difference with a baseline.

    RUN_DIR is a run directory, a folder of run directories, or a glob pattern (quoted). Runs are grouped by
    dataset, IPC, evaluation protocol, method (distill + active plugins) and the settings that shaped them;
    runs that cannot be compared are listed as skipped, with the reason.
    """
    from ddcore.errors import ConfigError

    if json_out == "-" and csv_out == "-":
        raise ConfigError("--json - and --csv - both write to stdout; send one of them to a file")
    json_path, csv_path, png_path = _output(json_out, "--json"), _output(csv_out, "--csv"), _output(png_out, "--png")
    if png_out == "-":
        raise ConfigError("--png needs a file name (a PNG cannot go to stdout)")

    from ddcore.compare import compare_runs, draw_comparison, find_runs

    found, skipped = find_runs(run_dirs)
    comparison = compare_runs(found, evaluator=evaluator, baseline=baseline, skipped=skipped)
    to_stdout = "-" in (json_out, csv_out)
    if json_out is not None:
        _write_json(comparison, json_path)
    if csv_out is not None:
        _write_csv(comparison, csv_path)
    if png_path is not None:
        draw_comparison(comparison, png_path)
    if to_stdout:
        for item in comparison.skipped:
            click.echo(f"skipped {item.path}: {item.reason}", err=True)
        return
    _print_tables(comparison)
    for path, what in ((json_path, "JSON"), (csv_path, "CSV"), (png_path, "chart")):
        if path is not None:
            click.echo(f"written ({what}): {path}")


def _write_json(comparison, path: Path | None) -> None:
    import json

    from ddcore.atomic import write_json
    from ddcore.compare import to_json

    data = to_json(comparison)
    if path is None:
        click.echo(json.dumps(data, indent=2))
    else:
        write_json(path, data)


def _write_csv(comparison, path: Path | None) -> None:
    import csv
    import io

    from ddcore.atomic import atomic_open
    from ddcore.compare import CSV_COLUMNS, group_rows

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in group_rows(comparison):
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    if path is None:
        click.echo(buffer.getvalue(), nl=False)
    else:
        with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())


def _cell(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f} ± " + ("n/a" if std is None else f"{std:.2f}")  # one network: no spread to show


def _print_tables(comparison) -> None:
    from rich.console import Console
    from rich.table import Table

    from ddcore_cli.output import stdout

    console = stdout()
    if not console.is_terminal:  # a pipe or a file: no terminal to fit, keep rows on one line
        console = Console(width=200)
    for family in comparison.families:
        title = f"{family.dataset} · IPC {family.ipc} · {family.protocol.label()}"
        table = Table(title=title, title_justify="left")
        columns = ("group", "seeds", "nets", "acc %", "seed sd", "initial acc %", f"Δ vs {family.baseline or '—'} [95% CI]", "pairs")
        for column in columns:
            table.add_column(column, justify="left" if column in ("group", "seeds") else "right")
        notes = []
        for group in family.groups:
            stats = group.stats()
            diff = family.differences.get(group.label)
            if group.label == family.baseline:
                delta, pairs = "baseline", ""
            elif diff is None or diff.result is None:
                delta, pairs = "—", "0"
            else:
                result = diff.result
                low, high = result.get("ci95_low"), result.get("ci95_high")
                delta = f"{result['mean']:+.2f} " + (f"[{low:+.2f}, {high:+.2f}]" if low is not None else "(one pair)")
                pairs = f"{diff.pairs} {diff.unit}"
            if diff is not None and diff.note:
                notes.append(f"{group.label}: {diff.note}")
            seed_sd = stats["seed_std"]
            table.add_row(group.label, ",".join(map(str, group.seeds)), str(len(group.networks)),
                          _cell(stats["acc_mean"], stats["acc_std"]), "—" if seed_sd is None else f"{seed_sd:.2f}",
                          _cell(stats["initial_acc_mean"], stats["initial_acc_std"]), delta, pairs)  # fmt: skip
        console.print(table)
        console.print(f"baseline: {family.baseline or '(none)'}; {family.baseline_rule}", soft_wrap=True, highlight=False, markup=False)
        for note in notes:
            console.print(f"note: {note}", soft_wrap=True, highlight=False, markup=False)
    console.print(HOW, soft_wrap=True, highlight=False, markup=False)
    for item in comparison.skipped:
        console.print(f"skipped {item.path}: {item.reason}", soft_wrap=True, highlight=False, markup=False)
