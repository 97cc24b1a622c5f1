"""``dd run``: distil a dataset with the built-ins and the requested plugins, then evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ddcore.config import BASELINES, deep_merge, parse_assignment, read_config_file
from ddcore.vocab import LABEL_MODES


def flag_overrides(**flags: Any) -> dict[str, Any]:
    """Map the flags that were given onto config keys (``None``/empty = not given)."""
    mapping = {
        "dataset": "dataset",
        "data_root": "data_root",
        "image_size": "image_size",
        "workers": "workers",
        "ipc": "ipc",
        "seed": "seed",
        "name": "name",
        "out": "out",
        "select": "select",
        "initialize": "initialize",
        "distill": "distill",
        "cache_dir": "cache_dir",
        "eval_runs": "eval.runs",
        "eval_epochs": "eval.epochs",
        "eval_model": "eval.model",
        "labels": "eval.labels",
    }
    overrides: dict[str, Any] = {}
    for flag, key in mapping.items():
        value = flags.get(flag)
        if value is None:
            continue
        overrides = deep_merge(overrides, _nested(key, str(value) if isinstance(value, Path) else value))
    if flags.get("baseline"):
        overrides = deep_merge(overrides, {"eval": {"baseline": list(flags["baseline"])}})
    if flags.get("log_with"):  # repeatable, each may be a comma list (the config splits it)
        overrides["log_with"] = list(flags["log_with"])
    for flag in ("overwrite", "cpu"):
        if flags.get(flag):
            overrides[flag] = True
    return overrides


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    head, _, rest = dotted.partition(".")
    return {head: _nested(rest, value) if rest else value}


def merged_config(config_file: Path | None, plugins: tuple[str, ...], sets: tuple[str, ...], **flags: Any) -> dict[str, Any]:
    """File, then ``--set`` assignments, then the named flags: later wins. ``--plugin`` adds to the file's list."""
    data = read_config_file(config_file) if config_file else {}
    for assignment in sets:
        data = deep_merge(data, parse_assignment(assignment))
    data = deep_merge(data, flag_overrides(**flags))
    if plugins:
        listed = data.get("plugins", [])
        listed = [listed] if isinstance(listed, str) else list(listed)
        data["plugins"] = [*listed, *(p for p in plugins if p not in listed)]
    return data


#: The built-in datasets read from local files (``ddcore.builtin.datasets``; a test keeps this list equal to the
#: registry's, which the help cannot import: it needs torch).
LOCAL_DATASETS = ("cifar10", "cifar100", "mnist", "fashion-mnist", "tiny-imagenet", "imagenette", "imagewoof")
DATA_ROOT_HELP = (
    "Folder holding the dataset's files (nothing is ever downloaded). Needed by imagefolder, by the standard "
    f"benchmarks {', '.join(LOCAL_DATASETS)} (the layout each expects: docs/datasets.md or the error without it) "
    "and by plugin datasets that say so (compdd/...); digits needs none."
)


@click.command(name="run")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), help="TOML config file; flags win over it.")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME|FILE.py", help="Activate a plugin (repeatable).")
@click.option("--dataset", help="Registered dataset name (see `dd datasets`). Default: digits.")
@click.option("--data-root", type=click.Path(path_type=Path), help=DATA_ROOT_HELP)
@click.option("--image-size", type=int, help="Resize images to this side (default: the dataset's own).")
@click.option("--workers", type=int, help="Data loader worker processes (default 2).")
@click.option("--ipc", type=int, help="Images per class (default 10).")
@click.option("--seed", type=int, help="The run's one seed (default 0).")
@click.option("--name", help="Run name (default <dataset>-ipc<ipc>).")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory (default runs/<timestamp>-<name>).")
@click.option("--overwrite", is_flag=True, help="Replace the run in --out: everything in that folder is deleted first (only a folder holding a ddcore run).")
@click.option("--select", help="Plugin that answers dd_select when several could.")
@click.option("--initialize", help="Plugin that answers dd_initialize when several could.")
@click.option("--distill", metavar="NAME", help="A registered distiller (dd distillers): none (selection only, the default), tm (trajectory matching), or a plugin's.")
@click.option("--eval-runs", type=int, help="Networks trained by the built-in evaluator (default 3; 0 = off).")
@click.option("--eval-epochs", type=int, help="Epochs per evaluation network (default: dataset preset).")
@click.option("--eval-model", help="Evaluation network: convnet, convnetd3/4/5, resnet18.")
@click.option("--labels", type=click.Choice(LABEL_MODES), help="Labels the evaluator trains with.")
@click.option("--baseline", multiple=True, type=click.Choice(BASELINES), help="Also evaluate a random real subset of the same size / the full training set.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any config key, e.g. --set eval.lr=0.02 --set plugin.edf.beta=2.")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Cache folder (default $DDCORE_CACHE or ~/.cache/ddcore).")
@click.option("--cpu", is_flag=True, help="Run on the CPU even when a GPU is present.")
@click.option("--log-with", "log_with", multiple=True, metavar="TRACKER[,TRACKER]", help="Also log to Accelerate trackers: tensorboard, wandb, mlflow, ... (repeatable or a comma list; logs under RUN/trackers/). Default: none.")
@click.option("--resume", type=click.Path(path_type=Path), metavar="RUN_DIR", help="Continue a run from its last finished stage with its recorded config; other options may change only later stages (eval.* once the set is distilled).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars; print only the metrics table.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
def run_command(config_file, plugins, sets, resume, quiet, as_json, **flags) -> None:
    """Distil a dataset and evaluate the result; artifacts go to the run directory."""
    import json

    from ddcore.runner import resume_run, run
    from ddcore_cli.output import metrics_table, stdout

    if resume is not None:  # options that shape what the run has saved are refused there, naming the key
        overrides = merged_config(config_file, plugins, sets, **flags)
        result = resume_run(resume, quiet=quiet or as_json, overrides=overrides)
    else:
        result = run(merged_config(config_file, plugins, sets, **flags), quiet=quiet or as_json)
    if result.manifest["accelerate"]["process_index"] != 0:  # only the main process prints
        return
    if as_json:
        click.echo(json.dumps({"out_dir": str(result.out_dir), "metrics": result.metrics}, indent=2))
        return
    console = stdout()
    if result.metrics:
        console.print(metrics_table(result.metrics, title=f"{result.manifest['name']} metrics (accuracy %)"))
        from ddcore.builtin.evaluate import describe_rows

        for line in describe_rows(result.metrics, distiller=result.manifest["config"].get("distill")):  # what each row is
            console.print(line, soft_wrap=True, highlight=False)
    console.print(f"run directory: {result.out_dir}")
