"""bench/quality.py (issue 17, part 5): the grid, the resumable results file, the pairing and the statistics.

The fast tests drive the script with a stand-in cell runner whose accuracies are a known function of
(method, seed); the slow one runs real ``dd run`` cells on digits and checks the pairing on the saved images.
"""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "quality.py"
# t(0.975, 2), from standard tables (NIST/SEMATECH e-Handbook 1.3.6.7.2: 4.303)
T_975_DF2 = 4.3027


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("ddcore_bench_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------


def test_paired_stats_known_numbers(quality):
    s = quality.paired_stats([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["std"] == 1.0
    assert s["t"] == pytest.approx(T_975_DF2, abs=1e-4)
    half = T_975_DF2 * 1.0 / math.sqrt(3)
    assert s["low"] == pytest.approx(2.0 - half, abs=1e-4) and s["high"] == pytest.approx(2.0 + half, abs=1e-4)


def test_paired_stats_one_seed_has_no_interval_and_bad_values_are_refused(quality):
    one = quality.paired_stats([2.5])
    assert (one["mean"], one["low"], one["high"], one["std"]) == (2.5, None, None, None)
    with pytest.raises(ValueError, match="no differences"):
        quality.paired_stats([])
    with pytest.raises(ValueError, match="non-finite"):
        quality.paired_stats([1.0, float("nan")])


def test_toml_values_read_back_as_dd_run_reads_them(quality):
    from ddcore.config import parse_assignment

    for value in ("observer", 'a "quoted" name', 1e-05, 0.1, 3, True, [1, 2], ["x"], {"a": 1}):
        assert parse_assignment(f"k={quality.toml_value(value, 'k')}")["k"] == value
    with pytest.raises(quality.ConfigError, match="not a finite number"):
        quality.toml_value(float("inf"), "tm.lr_img")


# ----------------------------------------------------------------------------------------------
# The grid, driven with a stand-in runner
# ----------------------------------------------------------------------------------------------


def accuracy(method: str, seed: int) -> float:
    """The stand-in runner's accuracy: a known function of method and seed (not of the order cells run in)."""
    base = {"random": 50.0, "tm": 55.0, "edf": 56.0}[method.split("-")[0]]  # a grid file's "tm-x": tm's
    return base + 1.5 * seed + (0.7 * seed * seed if method != "random" else 0.0)


class FakeRunner:
    """Records the cells it is asked to run; 'fails' lists (method, seed) cells that fail."""

    def __init__(self, fails=()):
        self.calls, self.fails = [], set(fails)

    def __call__(self, cell, run_dir, log, cache_dir, data_root=""):
        self.calls.append((cell.method.name, cell.seed))
        if (cell.method.name, cell.seed) in self.fails:
            return {"status": "failed", "error": "exit 2: Error: something the user can fix"}, 0.5
        acc = accuracy(cell.method.name, cell.seed)
        figures = {"hard": {"acc": acc, "runs": [acc - 1.0, acc + 1.0]}}
        if cell.method.starts_from:
            start = accuracy(cell.method.starts_from, cell.seed)
            figures["initial_runs"] = [start - 1.0, start + 1.0]
        return {"status": "complete", "figures": figures, "metrics": {"eval/acc_mean": acc}, "stages": {}}, 2.0


def grid_args(out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--datasets", "digits", "--methods", "tm", "edf", "--ipc", "1", "--seeds", "0-2", *extra]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


def test_grid_runs_every_cell_once_and_the_table_is_the_hand_computation(quality, tmp_path, capsys):
    out = tmp_path / "q"
    runner = FakeRunner()
    assert quality.main([*grid_args(out), "--json", str(tmp_path / "t.json")], runner=runner) == 0
    # edf's baselines (random, tm) joined the grid; 3 methods x 3 seeds, each once
    assert sorted(runner.calls) == sorted((m, s) for m in ("random", "tm", "edf") for s in (0, 1, 2))
    lines = records(out)
    assert len(lines) == 9 and len({r["key"] for r in lines}) == 9
    assert all(r["status"] == "complete" and r["run_dir"].startswith("runs/") for r in lines)
    assert {(r["cell"]["method"], r["seed"]) for r in lines} == set(runner.calls)

    # the paired difference and its interval, by hand from the recorded per-cell accuracies
    acc = {(r["cell"]["method"], r["seed"]): r["figures"]["hard"]["acc"] for r in lines}
    table = json.loads((tmp_path / "t.json").read_text())
    rows = {(row["method"], row["evaluation"]): row for row in table["rows"]}
    for method, base in (("tm", "random"), ("edf", "random"), ("edf", "tm")):
        diffs = [acc[(method, s)] - acc[(base, s)] for s in (0, 1, 2)]
        half = T_975_DF2 * statistics.stdev(diffs) / math.sqrt(3)
        got = rows[(method, "hard")]["vs"][base]
        assert got["mean"] == pytest.approx(statistics.fmean(diffs), abs=1e-12)
        assert got["low"] == pytest.approx(statistics.fmean(diffs) - half, abs=1e-3)
        assert got["high"] == pytest.approx(statistics.fmean(diffs) + half, abs=1e-3)
        assert got["seeds"] == [0, 1, 2]
    tm = rows[("tm", "hard")]
    assert tm["mean"] == pytest.approx(statistics.fmean(acc[("tm", s)] for s in (0, 1, 2)))
    assert tm["std"] == pytest.approx(statistics.stdev(acc[("tm", s)] for s in (0, 1, 2)))
    assert tm["start_check"] == {"seeds": [0, 1, 2], "max_abs_diff": 0.0}
    text = capsys.readouterr().out
    assert "pairing verified: digits IPC 1 tm" in text and "Reproduce: `" in text and "--seeds 0-2" in text

    # a rerun does no work and leaves the results file as it was
    before = (out / "results.jsonl").read_bytes()
    again = FakeRunner()
    assert quality.main(grid_args(out), runner=again) == 0
    assert again.calls == [] and (out / "results.jsonl").read_bytes() == before


def test_jobs_run_cells_side_by_side_and_give_the_same_results(quality, tmp_path):
    """--jobs 2: two cells are in flight at once (a barrier only two concurrent calls pass), every cell
    runs once, and the results (keys, figures) and table are those of --jobs 1."""
    import threading

    barrier = threading.Barrier(2, timeout=30)

    lock, started = threading.Lock(), []

    class Together(FakeRunner):
        def __call__(self, cell, run_dir, log, cache_dir, data_root=""):
            with lock:
                started.append(cell.name)
                first_two = len(started) <= 2
            if first_two:  # the first two cells wait for each other: with one job this would time out
                barrier.wait()
            with lock:
                return super().__call__(cell, run_dir, log, cache_dir, data_root)

    serial, parallel = tmp_path / "one", tmp_path / "two"
    assert quality.main([*grid_args(serial), "--json", str(tmp_path / "one.json")], runner=FakeRunner()) == 0
    runner = Together()
    assert quality.main([*grid_args(parallel), "--jobs", "2", "--json", str(tmp_path / "two.json")], runner=runner) == 0
    assert sorted(runner.calls) == sorted((m, s) for m in ("random", "tm", "edf") for s in (0, 1, 2))

    def figures(out):
        return {r["key"]: (r["status"], r["figures"]) for r in records(out)}

    assert figures(parallel) == figures(serial)
    one, two = (json.loads((tmp_path / f).read_text())["rows"] for f in ("one.json", "two.json"))
    strip = lambda rows: [{k: v for k, v in row.items() if k != "run_dirs"} for row in rows]  # noqa: E731
    assert strip(two) == strip(one)
    assert quality.main([*grid_args(tmp_path / "zero"), "--jobs", "0"], runner=FakeRunner()) == 2
    assert not (tmp_path / "zero").exists()


def test_failed_cell_is_recorded_shown_and_rerun(quality, tmp_path, capsys):
    out = tmp_path / "q"
    assert quality.main(grid_args(out), runner=FakeRunner(fails={("tm", 1)})) == 1  # a failed cell: exit 1
    failed = [r for r in records(out) if r["status"] == "failed"]
    assert [(r["cell"]["method"], r["seed"], r["error"]) for r in failed] == [("tm", 1, "exit 2: Error: something the user can fix")]
    text = capsys.readouterr().out
    assert "| digits | 1 | tm | hard | 2 |" in text and "1 failed" in text
    assert "failed: digits IPC 1 tm seed 1: exit 2: Error: something the user can fix" in text
    keep = FakeRunner()
    assert quality.main([*grid_args(out), "--skip-failed"], runner=keep) == 1  # still failed
    assert keep.calls == []
    retry = FakeRunner()
    assert quality.main(grid_args(out), runner=retry) == 0
    assert retry.calls == [("tm", 1)]  # only the failed cell; its new line wins
    assert "| digits | 1 | tm | hard | 3 |" in capsys.readouterr().out


def test_other_global_options_are_refused_unless_allowed(quality, tmp_path, capsys):
    out = tmp_path / "q"
    assert quality.main(grid_args(out), runner=FakeRunner()) == 0
    capsys.readouterr()
    runner = FakeRunner()
    assert quality.main([*grid_args(out), "--set", "eval.runs=5"], runner=runner) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "eval.runs unset -> 5" in err and "--allow-other-globals" in err
    assert runner.calls == []
    assert quality.main([*grid_args(out), "--set", "eval.runs=5", "--allow-other-globals"], runner=runner) == 0
    assert len(runner.calls) == 9 and len(records(out)) == 18  # new keys beside the old cells


def test_torn_last_line_is_skipped_and_that_cell_runs_again(quality, tmp_path):
    out = tmp_path / "q"
    assert quality.main(grid_args(out), runner=FakeRunner()) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    (out / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    runner = FakeRunner()
    assert quality.main(grid_args(out), runner=runner) == 0
    assert runner.calls == [(last["cell"]["method"], last["seed"])]
    assert len(records(out)) == 9  # the torn line was cut off; the new record replaced it


def test_bad_input_is_one_line_and_writes_nothing(quality, tmp_path, capsys):
    out = tmp_path / "q"
    cases = [
        (["--methods", "nope"], "method 'nope' is not defined (option --methods)"),
        (["--seeds", "3-1"], "--seeds '3-1'"),
        (["--ipc", "0"], "every IPC must be >= 1"),
        (["--set", "novalue"], "--set 'novalue': expected KEY=VALUE"),
        (["--set", "tm.lr_img=nan"], "not a finite number"),
    ]
    for extra, message in cases:
        assert quality.main(["--out", str(out), "--datasets", "digits", *extra], runner=FakeRunner()) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("Error: ") and message in err, err
    grid = tmp_path / "grid.toml"
    grid.write_text('methods = ["tm"]\nipcs = [1]\n')
    assert quality.main(["--out", str(out), "--grid", str(grid)], runner=FakeRunner()) == 2
    assert "unknown key(s) ipcs" in capsys.readouterr().err
    assert not out.exists()


def test_grid_file_declares_methods_datasets_and_global_options(quality, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'methods = ["edf-b2"]\ndatasets = ["compdd/proxy-hard"]\nipc = [10]\nseeds = [0, 1]\n'
        '[set]\neval.runs = 2\ntm.iterations = 7\nplugin.edf.interval = 5\n'
        '[method.edf-b2]\nbase = "edf"\nset = {"plugin.edf.beta" = 2.0}\n'
    )
    args = quality.parse_args(["--out", str(tmp_path / "q"), "--grid", str(grid), "--seeds", "1"])
    g = quality.build_grid(args)
    assert [m.name for m in g.methods] == ["random", "tm", "edf-b2"] and g.added == ["random", "tm"]
    assert g.seeds == [1] and g.ipc == [10]
    cells = {c.method.name: c for c in quality.cells_of(g)}
    assert set(cells) == {"random", "tm", "edf-b2"}
    # a distiller's table and a plugin's section reach only the cells that use them
    assert cells["random"].options == {"holdout": "always", "validation": 0.1, "plugin.compdd.evaluate": "off", "eval.runs": 2}
    assert cells["tm"].options["tm.iterations"] == 7 and "plugin.edf.interval" not in cells["tm"].options
    edf = cells["edf-b2"]
    assert edf.options["plugin.edf.beta"] == 2.0 and edf.options["plugin.edf.interval"] == 5
    argv = edf.run_args()
    assert argv[:4] == ["--plugin", "compdd", "--plugin", "edf"] and "--cpu" in argv and "--distill" in argv
    assert len({c.key for c in cells.values()}) == 3


# ----------------------------------------------------------------------------------------------
# Real cells
# ----------------------------------------------------------------------------------------------

TINY = ["workers=0", "eval.runs=2", "eval.epochs=2", "eval.width=8", "eval.batch_size=64", "experts.num=1",
        'tm.preset="none"', "tm.iterations=2", "tm.syn_steps=2", "tm.expert_epochs=1", "tm.max_start_epoch=1",
        "tm.cur_max_start_epoch=1", "tm.expansion_end=1", "tm.checkpoint_every=0"]  # fmt: skip


def refuse(cell, run_dir, log, cache_dir, data_root=""):
    raise AssertionError(f"a rerun ran {cell.name}")


class PopenStub:
    """A stand-in for ``subprocess.Popen`` as ``run_cell`` uses it (a context manager with ``communicate``,
    ``terminate``, ``kill`` and ``returncode``); tests subclass it to script a ``dd run``."""

    def __init__(self, argv, **kwargs):
        self.argv, self.run_dir, self.returncode = argv, Path(argv[argv.index("--out") + 1]), None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def terminate(self):
        pass

    kill = terminate

    def communicate(self):
        return "", ""


def one_cell(quality, out: Path):
    """The grid's one cell: digits, random, IPC 1, seed 0."""
    args = quality.parse_args(["--out", str(out), "--datasets", "digits", "--methods", "random", "--ipc", "1", "--seeds", "0"])
    return quality.cells_of(quality.build_grid(args))[0]


@pytest.mark.slow
def test_digits_grid_real_runs_pair_by_seed_and_resume(quality, tmp_path):
    out = tmp_path / "q"
    argv = ["--out", str(out), "--datasets", "digits", "--methods", "random", "tm", "--ipc", "1", "--seeds", "0-1",
            "--cache-dir", str(tmp_path / "cache"), "--json", str(tmp_path / "t.json"), *[a for s in TINY for a in ("--set", s)]]  # fmt: skip
    assert quality.main(argv) == 0
    lines = records(out)
    assert sorted((r["cell"]["method"], r["seed"], r["status"]) for r in lines) == [
        ("random", 0, "complete"), ("random", 1, "complete"), ("tm", 0, "complete"), ("tm", 1, "complete")]  # fmt: skip
    by = {(r["cell"]["method"], r["seed"]): r for r in lines}

    # the recorded accuracy is the run's own test-split figure
    for record in lines:
        metrics = json.loads((out / record["run_dir"] / "metrics.json").read_text())["metrics"]
        assert record["figures"]["hard"]["acc"] == metrics["eval/acc_mean"]

    # pairing: the tm run of a seed started from exactly the images the random run of that seed evaluated
    for seed in (0, 1):
        selected = torch.load(out / by[("random", seed)]["run_dir"] / "distilled.pt", weights_only=False)
        start = torch.load(out / by[("tm", seed)]["run_dir"] / "checkpoints" / "initial.pt", weights_only=False)
        assert torch.equal(selected["images"], start["images"]) and torch.equal(selected["labels"], start["labels"])
        assert by[("tm", seed)]["figures"]["initial_runs"] == by[("random", seed)]["figures"]["hard"]["runs"]
    first, second = (torch.load(out / by[("random", s)]["run_dir"] / "distilled.pt", weights_only=False) for s in (0, 1))
    assert not torch.equal(first["images"], second["images"])  # another seed, another selection

    # the table's paired difference and interval, by hand from the recorded per-cell accuracies
    diffs = [by[("tm", s)]["figures"]["hard"]["acc"] - by[("random", s)]["figures"]["hard"]["acc"] for s in (0, 1)]
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.975, 1)) * statistics.stdev(diffs) / math.sqrt(2)
    row = next(r for r in json.loads((tmp_path / "t.json").read_text())["rows"] if r["method"] == "tm")
    assert row["vs"]["random"]["mean"] == pytest.approx(statistics.fmean(diffs), abs=1e-12)
    assert row["vs"]["random"]["low"] == pytest.approx(statistics.fmean(diffs) - half, abs=1e-9)
    assert row["vs"]["random"]["high"] == pytest.approx(statistics.fmean(diffs) + half, abs=1e-9)
    assert row["start_check"] == {"seeds": [0, 1], "max_abs_diff": 0.0}

    # a rerun does no work
    before = (out / "results.jsonl").read_bytes()
    assert quality.main(argv, runner=refuse) == 0
    assert (out / "results.jsonl").read_bytes() == before


def test_docstring_examples(quality):
    import doctest

    failures, tried = doctest.testmod(quality)
    assert failures == 0 and tried >= 4


class BrokenPairing(FakeRunner):
    """tm's starting images evaluate 0.25 points away from random's at seed 1 (as a different start would)."""

    def __call__(self, cell, run_dir, log, cache_dir, data_root=""):
        fields, seconds = super().__call__(cell, run_dir, log, cache_dir, data_root)
        if cell.method.name == "tm" and cell.seed == 1:
            fields["figures"]["initial_runs"] = [v + 0.25 for v in fields["figures"]["initial_runs"]]
        return fields, seconds


def test_a_start_that_differs_from_the_baseline_selection_is_reported(quality, tmp_path, capsys):
    out = tmp_path / "q"
    assert quality.main([*grid_args(out), "--json", str(tmp_path / "t.json")], runner=BrokenPairing()) == 0
    text = capsys.readouterr().out
    assert "pairing: digits IPC 1 tm: its starting images evaluate up to 0.25 points away" in text
    assert "pairing verified: digits IPC 1 edf" in text
    rows = {row["method"]: row for row in json.loads((tmp_path / "t.json").read_text())["rows"]}
    assert rows["tm"]["start_check"]["max_abs_diff"] == pytest.approx(0.25)


# ----------------------------------------------------------------------------------------------
# A fresh user's paths: --report, refusals up front, exit status, dry-run
# ----------------------------------------------------------------------------------------------


def test_report_reads_the_grid_and_global_options_from_the_results_file(quality, tmp_path, capsys):
    out = tmp_path / "q"
    assert quality.main([*grid_args(out), "--set", "eval.runs=5", "--data-root", str(tmp_path)], runner=FakeRunner()) == 0
    assert {r["data_root"] for r in records(out)} == {str(tmp_path)} and records(out)[0]["overrides"] == {"eval.runs": 5}
    capsys.readouterr()
    assert quality.main(["--out", str(out), "--report", "--json", str(tmp_path / "t.json")], runner=refuse) == 0
    text = capsys.readouterr().out
    table = json.loads((tmp_path / "t.json").read_text())
    assert [(r["method"], r["n"], r["missing"]) for r in table["rows"]] == [("random", 3, 0), ("tm", 3, 0), ("edf", 3, 0)]
    diffs = [accuracy("tm", s) - accuracy("random", s) for s in (0, 1, 2)]
    assert table["rows"][1]["vs"]["random"]["mean"] == pytest.approx(statistics.fmean(diffs))
    assert table["globals"]["set"]["eval.runs"] == 5 and "--set eval.runs=5" in text and "not run" not in text
    # grid flags narrow what is reported (tm's baseline joins)
    assert quality.main(["--out", str(out), "--report", "--methods", "tm", "--seeds", "1", "--json", str(tmp_path / "t.json")],
                        runner=refuse) == 0  # fmt: skip
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [(r["method"], r["n"], list(r["per_seed"])) for r in rows] == [("random", 1, ["1"]), ("tm", 1, ["1"])]
    # a file of two global option sets: pick one with --set
    assert quality.main([*grid_args(out), "--set", "eval.runs=4", "--allow-other-globals"], runner=FakeRunner()) == 0
    capsys.readouterr()
    assert quality.main(["--out", str(out), "--report"], runner=refuse) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 sets of global options" in err and "--set" in err
    assert quality.main(["--out", str(out), "--report", "--set", "eval.runs=4"], runner=refuse) == 0
    assert quality.main(["--out", str(out), "--report", "--set", "eval.runs=9"], runner=refuse) == 2
    err = capsys.readouterr().err.strip()  # it names the options the file's cells were made with, as flags
    assert len(err.splitlines()) == 1 and "holds no cells made with --set eval.runs=9 --device cpu;" in err, err
    assert "--set eval.runs=4 --device cpu or --set eval.runs=5 --device cpu" in err, err
    assert quality.as_flags({"device": "cpu", "set": dict(quality.BASE_OPTIONS)}) == "no --set --device cpu"
    assert quality.as_flags({"device": "cuda", "set": {**quality.BASE_OPTIONS, "tm.lr_lr": 1e-7}}) == "--set tm.lr_lr=1e-07 --device cuda"
    # a narrowing the file never ran (a typo, seeds not run yet) is tabulated as "not run", with one note each
    assert quality.main(["--out", str(out), "--report", "--set", "eval.runs=4", "--datasets", "digitz", "--seeds", "2-3"],
                        runner=refuse) == 0  # fmt: skip
    notes = capsys.readouterr().err.strip().splitlines()
    assert notes == [f"note: {out / 'results.jsonl'} holds no cells of dataset digitz with these global options (it holds digits)",
                     f"note: {out / 'results.jsonl'} holds no cells of seed 3 with these global options (it holds 0, 1, 2)"]  # fmt: skip
    # a grid file's method named without its --grid: the refusal says where it is defined
    assert quality.main(["--out", str(out), "--report", "--set", "eval.runs=4", "--methods", "diffusion-rank"], runner=refuse) == 2
    assert "a grid file's [method.NAME] needs that --grid" in capsys.readouterr().err
    # nothing to report: a folder never run says so, and so does an empty results file
    assert quality.main(["--out", str(tmp_path / "never"), "--report"], runner=refuse) == 2
    assert "results.jsonl does not exist; run the grid first" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.jsonl").write_text("")
    assert quality.main(["--out", str(tmp_path / "empty"), "--report"], runner=refuse) == 2
    assert "results.jsonl holds no cells; run the grid first" in capsys.readouterr().err


def test_report_exits_1_when_a_cell_of_the_grid_failed(quality, tmp_path, capsys):
    out = tmp_path / "q"
    assert quality.main(grid_args(out), runner=FakeRunner(fails={("edf", 2)})) == 1
    assert "1 cell(s) of the grid failed" in capsys.readouterr().err
    assert quality.main(["--out", str(out), "--report"], runner=refuse) == 1
    assert quality.main(["--out", str(out), "--report", "--methods", "tm"], runner=refuse) == 0  # edf not in this table


def test_an_evaluation_turned_off_is_refused_before_any_cell(quality, tmp_path, capsys):
    out = tmp_path / "q"
    runner = FakeRunner()
    assert quality.main([*grid_args(out), "--set", "eval.runs=0"], runner=runner) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "eval.runs = 0" in err and "eval.runs >= 1" in err, err
    assert runner.calls == [] and not out.exists()
    # random-kd turns eval.runs off itself and reports only KD: accepted
    args = quality.parse_args(["--out", str(out), "--datasets", "digits", "--methods", "random-kd", "--ipc", "1", "--seeds", "0"])
    quality.check_evaluations(quality.cells_of(quality.build_grid(args)))


def test_a_run_without_its_metric_fails_in_one_plain_line(quality, tmp_path, monkeypatch):
    seen = []

    class FakePopen(PopenStub):  # dd run succeeded but evaluated nothing
        def __init__(self, argv, **kwargs):
            super().__init__(argv)
            seen.append(argv)
            self.run_dir.mkdir(parents=True)
            (self.run_dir / "metrics.json").write_text(json.dumps({"metrics": {"distill/seconds": 1.0}}))
            (self.run_dir / "manifest.json").write_text("{}")
            self.returncode = 0

    monkeypatch.setattr(quality.subprocess, "Popen", FakePopen)
    cell = one_cell(quality, tmp_path)
    fields, _ = quality.run_cell(cell, tmp_path / "run", tmp_path / "log.txt", "", str(tmp_path / "data"))
    assert fields["status"] == "failed" and "Error" not in fields["error"] and "eval/acc_mean" in fields["error"]
    assert seen[0][-2:] == ["--data-root", str(tmp_path / "data")]


def test_data_root_and_dataset_problems_stop_before_the_first_cell(quality, tmp_path, capsys):
    out = tmp_path / "q"
    base = ["--out", str(out), "--methods", "random", "--ipc", "1", "--seeds", "0"]
    for extra, message in (
        (["--datasets", "mnist"], "--data-root"),
        (["--datasets", "mnist", "--data-root", str(tmp_path / "nowhere")], "--data-root"),
        (["--datasets", "nope"], "(option --datasets)"),
    ):
        for dry in ([], ["--dry-run"]):  # the real runner: dd run's checks and the dataset built once; a dry run too
            assert quality.main([*base, *extra, *dry]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and message in err and "(option --dataset)" not in err, err
    assert quality.main([*base, "--grid", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "(option --grid)" in err and "--config" not in err, err
    assert not out.exists()


def test_dry_run_prints_whole_commands_and_estimates_from_any_finished_cell(quality, tmp_path, capsys):
    out = tmp_path / "q"
    assert quality.main(grid_args(out), runner=FakeRunner()) == 0  # 9 cells of 2.0 s each
    capsys.readouterr()
    cache, root = tmp_path / "cache", tmp_path / "data"
    argv = [*grid_args(out, "--seeds", "3"), "--dry-run", "--cache-dir", str(cache), "--data-root", str(root)]
    assert quality.main(argv, runner=refuse) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "3 of 3 cells to run; estimated 6 s from finished cells"
    for line in lines[:-1]:
        name, _, command = line.partition(": ")
        assert f"--out {out / 'runs' / name}" in command and f"--cache-dir {cache}" in command and f"--data-root {root}" in command


def test_time_left_takes_off_what_running_cells_have_spent_and_shares_it_among_jobs(quality, tmp_path, capsys):
    """The progress line's estimate: each unfinished cell counts its median finished time, less what it has
    already run (never below 0); the total is shared by --jobs cells (fewer when fewer are left), but the
    time left is never less than the longest cell; with nothing to go by it says so."""
    out = tmp_path / "q"
    assert quality.main(grid_args(out), runner=FakeRunner()) == 0  # 9 cells of 2.0 s each
    capsys.readouterr()
    args = quality.parse_args([*grid_args(out, "--seeds", "3"), "--jobs", "2"])
    cells = quality.cells_of(quality.build_grid(args))  # 3 unfinished cells, 2.0 s each by their finished seeds
    records = quality.read_results(out / quality.RESULTS_FILE)
    first, second, third = cells
    assert quality.cell_seconds(cells, records) == ([2.0, 2.0, 2.0], 0)
    assert quality.cell_seconds(cells, records, {first.key: 1.5}) == ([0.5, 2.0, 2.0], 0)
    assert quality.cell_seconds(cells, records, {first.key: 9.0, second.key: 0.5}) == ([0.0, 1.5, 2.0], 0)  # late: 0
    assert quality.time_left([2.0, 2.0, 2.0], 2, 3) == 3.0 and quality.time_left([2.0, 2.0, 2.0], 2, 1) == 6.0
    assert quality.time_left([10.0, 1.0, 1.0], 2, 3) == 10.0  # one long cell is not shared
    assert quality.time_left([], 2, 0) == 0.0
    # the third cell starts while the first two run (1.5 s and 0.5 s in): max((0.5 + 1.5 + 2.0) / 2, 2.0) = 2 s
    # (3 s if the time spent were not taken off)
    now = time.monotonic()
    quality.announce(3, third, cells, cells, records, args, {first.key: now - 1.5, second.key: now - 0.5})
    assert capsys.readouterr().err.strip() == f"[3/3] {third.name}; about 2 s left"
    quality.announce(1, first, cells, cells, {}, args)  # nothing finished to go by
    assert capsys.readouterr().err.strip() == f"[1/3] {first.name}; time left unknown (3 unmeasured cell(s))"
    assert quality.parallel(2, 1) == 1 and quality.parallel(2, 0) == 1 and quality.parallel(2, 5) == 2


# ----------------------------------------------------------------------------------------------
# Validation-split evaluations (the grids that choose presets)
# ----------------------------------------------------------------------------------------------


def test_val_evaluations_read_the_validation_figures_not_the_test_ones(quality):
    metrics = {
        "eval/acc_mean": 60.0, "eval/acc_runs": [59.0, 61.0],
        "eval/val_acc_mean": 70.0, "eval/val_acc_runs": [69.0, 71.0],
        "diffsel/kd_acc_mean": 80.0, "diffsel/kd_acc_runs": [80.0],
        "diffsel/kd_val_acc_mean": 90.0, "diffsel/kd_val_acc_runs": [90.0],
    }  # fmt: skip
    method = quality.Method("x", evaluations=("val", "kd-val"))
    figures = quality.extract(metrics, method)
    assert figures == {"val": {"acc": 70.0, "runs": [69.0, 71.0]}, "kd-val": {"acc": 90.0, "runs": [90.0]}}
    with pytest.raises(ValueError, match="diffsel/kd_val_acc_mean"):  # a run without a validation split
        quality.extract({k: v for k, v in metrics.items() if "kd_val" not in k}, method)


@pytest.mark.parametrize("name", sorted(p.name for p in (SCRIPT.parent / "grids").glob("*-select.toml")))
def test_shipped_selection_grids_report_only_validation_figures(quality, name):
    """A grid that chooses presets never puts a test figure in its table."""
    args = quality.parse_args(["--out", "unused", "--grid", str(SCRIPT.parent / "grids" / name)])
    grid = quality.build_grid(args)
    assert grid.methods and {e for m in grid.methods for e in m.evaluations} <= {"val", "kd-val"}
    assert grid.options["holdout"] == "always" and grid.options["validation"] > 0
    assert not set(grid.seeds) & set(range(5))  # not the table's seeds 0-4


def test_the_table_grid_uses_the_default_methods_and_the_chosen_diffusion_settings(quality):
    """bench/grids/proxy-quality.toml: its random/tm/edf cells are the default grid's (same keys, so
    cells run either way count), and its diffusion method is exactly the one chosen on validation."""
    grids = SCRIPT.parent / "grids"

    def cells(*argv):
        return {(c.dataset.name, c.ipc, c.method.name, c.seed): c for c in quality.cells_of(quality.build_grid(quality.parse_args(["--out", "unused", *argv])))}

    narrow = ["--methods", "tm", "edf", "--ipc", "10", "1", "--seeds", "0-4"]
    table, default = cells("--grid", str(grids / "proxy-quality.toml"), *narrow), cells(*narrow)
    assert table.keys() == default.keys() and len(table) == 2 * 2 * 3 * 5
    assert all(table[k].key == default[k].key for k in table)
    chosen = cells("--grid", str(grids / "proxy-diffsel-select.toml"), "--methods", "diffusion-rank")
    table = cells("--grid", str(grids / "proxy-quality.toml"), "--methods", "diffusion-rank", "--datasets", "compdd/proxy-hard", "--ipc", "10", "--seeds", "100")
    key = ("compdd/proxy-hard", 10, "diffusion-rank", 100)
    assert chosen[key].key == table[key].key  # the same options, plugins and evaluation recipe, so the same cell


def test_an_interrupt_with_jobs_keeps_the_cells_that_complete_and_starts_no_more(quality, tmp_path, capsys, monkeypatch):
    """SIGINT to the script alone while two cells run (the real cell runner, with a stand-in process): the
    main thread stops the running processes; the cell that still completes is recorded, the one it stopped
    is not recorded as failed, no further cell starts, exit 130; a rerun runs the rest. Every step waits
    on the one before it (no sleeps), so the outcome does not depend on the machine's load."""
    import signal
    import threading

    main_thread = threading.main_thread().ident
    started, stopped, made = threading.Event(), threading.Event(), []

    class FakePopen(PopenStub):
        def __init__(self, argv, **kwargs):
            super().__init__(argv)
            self.first = not made
            made.append(self.run_dir.name)

        def terminate(self):
            stopped.set()

        kill = terminate

        def communicate(self):
            if not self.first:  # the second cell: runs until the main thread stops it
                started.set()
                assert stopped.wait(30)
                self.returncode = -15
                return "", "terminated"
            assert started.wait(30)  # both run: the signal arrives; this cell completes after it was handled
            signal.pthread_kill(main_thread, signal.SIGINT)
            assert stopped.wait(30)
            self.run_dir.mkdir(parents=True)
            metrics = {"eval/acc_mean": 50.0, "eval/acc_runs": [49.0, 51.0]}
            (self.run_dir / "metrics.json").write_text(json.dumps({"metrics": metrics}))
            (self.run_dir / "manifest.json").write_text("{}")
            self.returncode = 0
            return "", ""

    monkeypatch.setattr(quality.subprocess, "Popen", FakePopen)
    out = tmp_path / "q"
    assert quality.main([*grid_args(out), "--jobs", "2", "--no-validate"]) == 130
    assert len(made) == 2 and made[0].startswith("digits-ipc1-random-seed0") and made[1].startswith("digits-ipc1-tm-seed0")
    kept = records(out)
    assert [(r["cell"]["method"], r["seed"], r["status"]) for r in kept] == [("random", 0, "complete")]
    assert kept[0]["figures"]["hard"] == {"acc": 50.0, "runs": [49.0, 51.0]}
    assert "stopping the 2 running cell(s)" in capsys.readouterr().err
    rest = FakeRunner()
    assert quality.main([*grid_args(out), "--jobs", "2"], runner=rest) == 0
    assert sorted(rest.calls) == sorted(set((m, s) for m in ("random", "tm", "edf") for s in (0, 1, 2)) - {("random", 0)})


def test_a_cell_that_starts_while_the_others_are_stopped_stops_too(quality, tmp_path, monkeypatch):
    """The race an interrupt can meet: a cell's process starts after the main thread set ``stopping``
    (and may already have passed over the running processes); the cell stops its own process at once."""
    import threading

    calls = []

    class FakePopen(PopenStub):
        def terminate(self):
            calls.append("terminate")
            self.returncode = -15

        kill = terminate

        def communicate(self):
            calls.append("communicate")
            return "", "terminated"

    monkeypatch.setattr(quality.subprocess, "Popen", FakePopen)
    cell = one_cell(quality, tmp_path)
    stopping, processes = threading.Event(), set()
    stopping.set()
    fields, _ = quality.run_cell(cell, tmp_path / "run", tmp_path / "log.txt", "", "", processes=processes, stopping=stopping)
    assert calls == ["terminate", "communicate"] and fields["status"] == "failed" and not processes


def test_report_with_a_grid_shows_that_grids_methods_of_a_shared_folder(quality, tmp_path, capsys):
    """Two grids ran into one folder (the EDF selection reuses the TM selection's cells): --report --grid
    shows that grid's methods and names the others it leaves out; without --grid it is refused."""
    out = tmp_path / "q"
    grid = tmp_path / "g.toml"
    grid.write_text('methods = ["random", "tm", "tm-x"]\ndatasets = ["digits"]\nipc = [1]\nseeds = [0, 1]\n'
                    '[method.tm-x]\nbase = "tm"\nset = { "tm.iterations" = 3 }\n')  # fmt: skip
    other = tmp_path / "h.toml"
    other.write_text('methods = ["random", "tm", "tm-y"]\ndatasets = ["digits"]\nipc = [1]\nseeds = [0, 1]\n'
                     '[method.tm-y]\nbase = "tm"\nset = { "tm.iterations" = 4 }\n')  # fmt: skip
    for g in (grid, other):
        assert quality.main(["--out", str(out), "--grid", str(g)], runner=FakeRunner()) == 0
    capsys.readouterr()
    assert quality.main(["--out", str(out), "--report"], runner=refuse) == 2
    assert "tm-x, tm-y, not built in" in capsys.readouterr().err
    assert quality.main(["--out", str(out), "--report", "--grid", str(grid), "--json", str(tmp_path / "t.json")], runner=refuse) == 0
    assert "also holds method(s) tm-y" in capsys.readouterr().err
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [(r["method"], r["n"]) for r in rows] == [("random", 2), ("tm", 2), ("tm-x", 2)]
