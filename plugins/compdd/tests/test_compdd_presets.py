"""The miniature registers the digits preset family: CPU-sized matching and evaluator defaults."""

from __future__ import annotations

import pytest

from ddcore.runner import Pipeline


@pytest.mark.parametrize("level", ["easy", "hard"])
def test_the_miniature_gets_the_digits_presets(dd_context, tmp_path, level):
    config = {"dataset": f"compdd/mini-{level}", "distill": "tm", "ipc": 1, "cache_dir": str(tmp_path)}
    tm = Pipeline(config, ["compdd"], write=False).config.distill_options
    assert tm.preset == "digits-ipc1" and tm.iterations == 200  # not spec-ipc1's 10000
    ctx = dd_context(["compdd"], dataset=f"compdd/mini-{level}", eval={"width": 0})  # 0: the preset decides
    assert ctx.dataset.extra["presets"] == "digits"
    assert ctx.model_spec.width == 32 and ctx.model_spec.depth == 3
