"""`dd compare` of groups with a single evaluation network: their spread is unknown, shown as n/a, never ± 0."""

from __future__ import annotations

import csv
import io
import json

from test_compare import fake_run

from ddcore.compare import compare_runs, find_runs


def test_one_network_has_no_std_anywhere(tmp_path, cli):
    runs = tmp_path / "runs"
    fake_run(runs / "none-0", seed=0, acc=[70.0])
    fake_run(runs / "tm-0", seed=0, acc=[80.0], distill="tm", initial=[60.0])
    found, skipped = find_runs([str(runs)])
    [family] = compare_runs(found, skipped=skipped).families
    stats = {group.label: group.stats() for group in family.groups}
    assert stats["none"]["acc_mean"] == 70.0 and stats["none"]["acc_std"] is None
    assert stats["tm"]["acc_std"] is None and stats["tm"]["initial_acc_mean"] == 60.0 and stats["tm"]["initial_acc_std"] is None

    code, out, err = cli("compare", runs, "--csv", tmp_path / "c.csv", "--json", tmp_path / "c.json", "--png", tmp_path / "c.png")
    assert code == 0, err
    assert "70.00 ± n/a" in out and "80.00 ± n/a" in out and "60.00 ± n/a" in out and "± 0.00" not in out
    rows = {row["group"]: row for row in csv.DictReader(io.StringIO((tmp_path / "c.csv").read_text()))}
    assert rows["tm"]["acc_mean"] == "80.0" and rows["tm"]["acc_std"] == "" and rows["tm"]["initial_acc_std"] == ""
    groups = json.loads((tmp_path / "c.json").read_text())["families"][0]["groups"]
    assert [g["acc_std"] for g in groups] == [None, None]


def test_two_networks_keep_their_population_std(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "none-0", seed=0, acc=[70.0, 74.0])
    found, skipped = find_runs([str(runs)])
    [family] = compare_runs(found, skipped=skipped).families
    assert family.groups[0].stats()["acc_std"] == 2.0


def test_an_output_under_a_file_is_named_as_such(tmp_path, cli):
    from core_support import assert_cli_error

    fake_run(tmp_path / "runs" / "none-0", seed=0, acc=[70.0, 72.0])
    (tmp_path / "afile").write_text("x")
    for option in ("--csv", "--json", "--png"):
        assert_cli_error(cli("compare", tmp_path / "runs", option, tmp_path / "afile" / "out"), option, "afile is a file, not a folder")
    assert_cli_error(cli("compare", tmp_path / "runs", "--csv", tmp_path / "nodir" / "c.csv"), "the folder", "does not exist")
    assert (tmp_path / "afile").read_text() == "x"


def external_run(folder, *, seed, acc, path, content):
    """A run of ``dd eval --distilled PATH``: distill none, no plugins, and ``records["external"]``."""
    fake_run(folder, seed=seed, acc=acc)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["records"]["external"] = {"path": path, "content_sha256": content, "layout": "tensor-folder"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_external_sets_are_their_own_groups_not_the_selection_baseline(tmp_path):
    runs = tmp_path / "runs"
    for seed, acc in enumerate(([70.0, 72.0], [74.0, 76.0])):
        fake_run(runs / f"none-{seed}", seed=seed, acc=acc)
    for seed, acc in enumerate(([80.0, 82.0], [83.0, 85.0])):
        external_run(runs / f"datm-{seed}", seed=seed, acc=acc, path="/sets/datm-ipc1", content="a" * 64)
    external_run(runs / "other-0", seed=0, acc=[50.0, 52.0], path="/elsewhere/datm-ipc1", content="b" * 64)
    found, skipped = find_runs([str(runs)])
    comparison = compare_runs(found, skipped=skipped)
    [family] = comparison.families
    assert comparison.skipped == []  # no run displaced another of "its" seed
    labels = [g.label for g in family.groups]
    assert family.baseline == "none" and labels[0] == "none" and len(labels) == 3
    datm = next(g for g in family.groups if g.runs[0].path.endswith("datm-0"))
    other = next(g for g in family.groups if g.runs[0].path.endswith("other-0"))
    assert datm.method == other.method == "external:datm-ipc1" and datm.label != other.label
    assert [r.seed for r in datm.runs] == [0, 1]
    diff = family.differences[datm.label]  # by hand: run means 81 - 71 and 84 - 75
    assert diff.unit == "seeds" and diff.result["mean"] == 9.5
