"""The miniature's ranking: the complexity metric, with its default teacher, puts mini-hard above mini-easy."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ddcore_compdd.commands import compdd_group


@pytest.mark.slow
def test_mini_hard_is_more_complex_than_mini_easy(tmp_path):
    args = [
        "complexity", "--dataset", "compdd/mini-easy", "--dataset", "compdd/mini-hard", "--per-class", "20",
        "--teacher-epochs", "10",  # the default teacher's recipe, shortened (20 epochs by default)
        "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--workers", "0", "--cpu",
    ]  # fmt: skip
    result = CliRunner().invoke(compdd_group, args)
    assert result.exit_code == 0, result.output
    easy, hard = json.loads((tmp_path / "out" / "complexity.json").read_text())["datasets"]
    assert (easy["dataset"], hard["dataset"]) == ("compdd/mini-easy", "compdd/mini-hard")
    assert hard["complexity"] > easy["complexity"] + 0.02
    per_class = [(e["complexity"], h["complexity"]) for e, h in zip(easy["classes"], hard["classes"])]
    # Most digits are more complex in the hard set. Not "nearly every": the 10-epoch teacher is weak (~20%) and the
    # per-class values move with the float summation order (thread count, CPU); measured 8-9 of 10 at 1 and 2
    # threads, the aggregate gap 0.06-0.12. The claim that holds everywhere is the mean and a clear majority.
    assert sum(h > e for e, h in per_class) >= 6
    assert hard["classifier"]["kind"] == "teacher" and hard["classifier"]["test_acc"] > 20  # above chance (10%), if far from good after 10 epochs
