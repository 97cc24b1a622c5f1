"""Free text with brackets keeps them on the console (rich would read "[tm]" as a markup tag and drop it)."""

import io

from rich.console import Console

from ddcore.reporting import Reporter
from ddcore.tm.presets import preset_reason


def _reporter() -> tuple[Reporter, io.StringIO]:
    out = io.StringIO()
    return Reporter(console=Console(file=out, width=200, color_system=None)), out


def test_info_line_keeps_brackets():
    reporter, out = _reporter()
    reason = preset_reason("none", "mnist", 10)
    assert "[tm]" in reason
    reporter.info(f"tm preset {reason}; about 3 min")
    assert f"tm preset {reason}; about 3 min" in out.getvalue()
    assert "the [tm] defaults" in out.getvalue()


def test_progress_description_keeps_brackets():
    reporter, out = _reporter()
    with reporter.progress("scoring [tm] [bold] images", total=2) as advance:
        advance(2)
    assert "scoring [tm] [bold] images" in out.getvalue()
