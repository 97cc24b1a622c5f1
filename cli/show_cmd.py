"""``dd show RUN_DIR``: a run's summary from its manifest and metrics, and where its pictures are."""

from __future__ import annotations

from pathlib import Path

import click

#: The pictures a run directory may hold, in the order they are listed: the distilled set (every run that
#: saved one) and the matching loss and ``syn_lr`` over iterations (``--distill tm`` runs).
PICTURES = ("grid.png", "tm_log.png")


@click.command(name="show")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print manifest, metrics and the status line (state) as one JSON object.")
def show_command(run_dir: Path, as_json: bool) -> None:
    """Summarise the run in RUN_DIR."""
    import json

    from rich.markup import escape
    from rich.table import Table

    from ddcore import artifacts
    from ddcore_cli.output import metrics_table, stdout

    manifest = artifacts.read_json(run_dir / artifacts.MANIFEST_FILE, "run manifest")
    metrics_path = run_dir / artifacts.METRICS_FILE
    metrics = artifacts.read_json(metrics_path, "metrics file").get("metrics", {}) if metrics_path.exists() else {}
    shown = pictures(run_dir)
    if as_json:
        state = run_state(run_dir, manifest)
        click.echo(json.dumps({"manifest": manifest, "metrics": metrics, "state": state, "pictures": shown}, indent=2))
        return
    config = manifest.get("config", {})
    topology = manifest.get("accelerate", {})
    summary = Table(title=f"run {run_dir}", title_justify="left", show_header=False)
    summary.add_column("key")
    summary.add_column("value")
    rows = {
        "status": run_state(run_dir, manifest),
        "name": manifest.get("name"),
        "dataset": config.get("dataset"),
        "ipc": config.get("ipc"),
        "seed": manifest.get("seed"),
        "plugins": ", ".join(p["name"] for p in manifest.get("plugins", []) if p.get("source") != "builtin") or "(built-ins only)",
        "processes": topology.get("num_processes"),
        "wall time": f"{manifest.get('wall_seconds', 0):.1f} s",
        "ddcore": (manifest.get("versions") or {}).get("ddcore"),
    }
    for key, value in rows.items():
        summary.add_row(key, escape(str(value)))  # "Error [plugin]: ..." is text, not rich markup
    console = stdout()
    console.print(summary)
    stages = manifest.get("stages") or {}
    if stages:
        table = Table(title="stages", title_justify="left")
        for column in ("stage", "seconds", "peak RSS MiB"):
            table.add_column(column, justify="right" if column != "stage" else "left")
        for name, record in stages.items():
            table.add_row(name, f"{record.get('seconds', 0):.2f}", f"{record.get('peak_rss_mib', 0):.0f}")
        console.print(table)
    if metrics:
        console.print(metrics_table(metrics, title="metrics (accuracy %)"))
    for path in shown:
        console.print(f"picture: {path}", soft_wrap=True, highlight=False, markup=False)


def pictures(run_dir: Path) -> list[str]:
    """The paths of the :data:`PICTURES` that ``run_dir`` holds."""
    return [str(run_dir / name) for name in PICTURES if (run_dir / name).is_file()]


def run_state(run_dir: Path, manifest: dict) -> str:
    """One line: the status, how far the run got (what its directory holds) and what can be done next.

    ``"failed: distilled (distilled.pt saved), evaluation failed: PluginError: ...; redo the evaluation
    with `dd eval RUN` or `dd run --resume RUN`"``. A manifest at ``running`` whose process is gone (same
    host; no process with its pid, or one started at another time: :func:`ddcore.artifacts.run_liveness`)
    is ``"dead (the process N ended without finishing; last stage X; continue with dd run --resume RUN)"``;
    the root cause a failed process of a multi-process run left in ``errors/`` is named.
    """
    from ddcore import artifacts

    status = str(manifest.get("status", "?"))
    finished = manifest.get("finished") or []
    error = manifest.get("error")
    if status == "complete":
        return status
    if "distilled" in finished:
        reached = "distilled (distilled.pt saved)"
    elif "initial" in finished:
        reached = "initial set saved (checkpoints/initial.pt), distillation not finished"
    else:
        reached = "nothing saved yet"
    if status == "failed":
        stage = manifest.get("failed_stage")
        what = {"evaluate": "evaluation", "distill": "distillation"}.get(stage or "", f"stage {stage}" if stage else "the run")
        text = f"failed: {reached}, {what} failed" + (f": {error}" if error else "")
    elif status == "running":
        liveness, detail = artifacts.run_liveness(manifest)
        stage = manifest.get("last_stage")
        if liveness == "dead":
            text = f"dead ({detail}; last stage {stage or 'none'}; {reached}"
            cause = artifacts.root_cause(artifacts.read_process_errors(run_dir))
            if cause is not None:
                text += f"; process {cause['process']} failed: {cause.get('error')}"
            resume = f"continue with `dd run --resume {run_dir}`"
            if "distilled" in finished:
                resume += f" or redo the evaluation with `dd eval {run_dir}`"
            return f"{text}; {resume})"
        if liveness == "alive":  # nothing to do but wait
            return f"running ({detail}; stage {stage or 'setup'}): {reached}"
        else:
            text = f"running (or killed; {detail}): {reached}"
    else:
        text = f"{status}: {reached}"
    if "distilled" in finished:
        return f"{text}; redo the evaluation with `dd eval {run_dir}` or `dd run --resume {run_dir}`"
    return f"{text}; continue with `dd run --resume {run_dir}`"
