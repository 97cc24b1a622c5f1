"""Distillers as plugins: the registry, the ``[NAME]`` table, which plugins a distiller calls, and plugin
state inside the distiller's checkpoints (``dd_state_dict`` / ``dd_load_state_dict``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from core_support import assert_cli_error
from ddcore import ConfigError, DistilledSet, PluginError, hookimpl
from ddcore.distillers import Distiller, checkpoint_paths
from ddcore.errors import PluginCrash
from ddcore.runner import resume_run, run

BASE = {"dataset": "digits", "ipc": 1, "workers": 0, "eval": {"runs": 0}}


@dataclass
class ShiftConfig:
    """``[shift]``: add ``amount`` to every pixel, one ``step`` at a time."""

    amount: float = 0.5
    steps: int = 4
    fail_at: int = -1  # raise at this step (to interrupt a run)


class ShiftDistiller(Distiller):
    """A distiller with a known answer: after ``steps`` steps the images are ``initial + amount * steps``,
    except where ``dd_pixel_weights`` answers 0 (those pixels never move)."""

    def distill(self, initial: DistilledSet, session) -> DistilledSet:
        options, ctx = self.options, self.ctx
        images, step = initial.images.clone(), 0
        if session.resume_state is not None:
            images, step = session.resume_state["images"].clone(), session.resume_state["step"]
        fail_at = getattr(self, "interrupt_at", -1) if options.fail_at < 0 else options.fail_at
        while step < options.steps:
            if step == fail_at:
                raise RuntimeError(f"interrupted at step {step}")
            weights = ctx.hooks.pixel_weights(ctx, images, initial.labels, step)
            images = images + options.amount * (1.0 if weights is None else weights)
            step += 1
            session.save_checkpoint(step, {"images": images, "step": step})
        session.add_artifact("shift_log.json", {"steps": step})
        return DistilledSet(images, initial.labels, initial.class_names, initial.mean, initial.std, meta={"distilled_by": "shift"})


class ShiftPlugin:
    """Registers ``shift``; ``interrupt_at`` stops its runs at that step (as a kill would: not part of the config)."""

    name = "shift-plugin"

    def __init__(self, interrupt_at: int = -1) -> None:
        self.interrupt_at = interrupt_at

    @hookimpl
    def dd_register_distillers(self, register):
        def factory(ctx, options):
            distiller = ShiftDistiller(ctx, options)
            distiller.interrupt_at = self.interrupt_at
            return distiller

        register("shift", factory, config_class=ShiftConfig, calls=("dd_pixel_weights",), description="adds a constant")


class TopRowFrozen:
    """Answers both weighting hooks; keeps the top row of pixels still; counts its calls in its state."""

    name = "frozen-top"

    def __init__(self) -> None:
        self.calls = 0
        self.loaded: list[dict] = []

    @hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        self.calls += 1
        weights = torch.ones(1, 1, *images.shape[-2:])
        weights[..., 0, :] = 0.0
        return weights

    @hookimpl
    def dd_supervision_weights(self, ctx, losses, distances, step):
        raise AssertionError("the shift distiller never calls dd_supervision_weights")

    @hookimpl
    def dd_state_dict(self, ctx):
        return {"calls": self.calls}

    @hookimpl
    def dd_load_state_dict(self, ctx, state):
        self.loaded.append(state)
        self.calls = state["calls"]


def test_a_plugin_distiller_runs_with_its_table_and_gives_the_known_answer(tmp_path):
    result = run({**BASE, "distill": "shift", "shift": {"amount": 0.25, "steps": 3}, "out": str(tmp_path / "run")},
                 [ShiftPlugin()])  # fmt: skip
    initial = DistilledSet.load(tmp_path / "run" / "checkpoints" / "initial.pt")
    torch.testing.assert_close(result.distilled.images, initial.images + 0.75)
    assert result.manifest["config"]["distill"] == "shift"
    assert result.manifest["config"]["shift"] == {"amount": 0.25, "steps": 3, "fail_at": -1}
    assert result.manifest["records"]["distiller"] == {"name": "shift", "plugin": "shift-plugin",
                                                       "calls": ["dd_pixel_weights"], "not_called": {}}  # fmt: skip
    assert json.loads((tmp_path / "run" / "shift_log.json").read_text()) == {"steps": 3}
    assert [p.name for p in checkpoint_paths(tmp_path / "run" / "checkpoints", "shift")] == [
        "shift-00000003.pt", "shift-00000002.pt"]  # the newest two are kept


def test_a_plugin_called_in_part_runs_and_the_manifest_says_which_hooks_were_never_called():
    frozen = TopRowFrozen()
    result = run({**BASE, "distill": "shift", "shift": {"steps": 2}}, [ShiftPlugin(), frozen], write=False)
    assert frozen.calls == 2
    assert result.manifest["records"]["distiller"]["not_called"] == {"frozen-top": ["dd_supervision_weights"]}
    # The top row never moved (weight 0), every other pixel moved by 2 steps * 0.5.
    delta = result.distilled.images - run({**BASE}, write=False).distilled.images
    assert torch.all(delta[..., 0, :] == 0) and torch.allclose(delta[..., 1:, :], torch.ones_like(delta[..., 1:, :]))


def test_a_plugin_whose_weighting_hooks_are_never_called_is_refused_before_any_work(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ConfigError) as info:
        run({**BASE, "out": str(out)}, [ShiftPlugin(), TopRowFrozen()])
    assert str(info.value) == (
        "plugin 'frozen-top' answers dd_pixel_weights, dd_supervision_weights, which distiller 'none' never calls; "
        "distillers that call them: shift, tm (option --distill)"
    )
    assert not out.exists()


def test_unknown_distillers_tables_and_keys_are_one_line_errors_before_any_work(tmp_path):
    cases = [
        ({"distill": "shfit"}, 'unknown distiller "shfit" (option --distill). Did you mean "shift"? Registered: none, shift, tm'),
        ({"distill": "shift", "shift": {"amout": 1.0}}, "unknown config key 'shift.amout'; did you mean 'shift.amount'?"),
        ({"shfit": {"amount": 1.0}}, "unknown config table [shfit]: it is neither a core table nor a registered distiller's"),
        ({"distill": "shift", "tm": {"iterations": 3}},
         "config table [tm] holds options of distiller 'tm', but the run has distill = 'shift'; pass --distill tm"),
        ({"tm": {"iterations": 3}}, "config table [tm] holds options of distiller 'tm', but the run has distill = 'none'"),
    ]
    for config, message in cases:
        with pytest.raises(ConfigError) as info:
            run({**BASE, **config, "out": str(tmp_path / "x")}, [ShiftPlugin()])
        assert message in str(info.value)
        assert not (tmp_path / "x").exists()


def test_two_plugins_registering_one_distiller_name_are_named():
    class Other:
        name = "other-shift"

        @hookimpl
        def dd_register_distillers(self, register):
            register("shift", ShiftDistiller)

    with pytest.raises(PluginError, match=r'distiller "shift" is registered by both "(shift-plugin|other-shift)" and "(shift-plugin|other-shift)"'):
        run({**BASE, "distill": "shift"}, [ShiftPlugin(), Other()], write=False)


def test_a_distiller_that_returns_something_else_is_named():
    class Broken(Distiller):
        def distill(self, initial, session):
            return initial.images

    class BrokenPlugin:
        name = "broken"

        @hookimpl
        def dd_register_distillers(self, register):
            register("broken", Broken)

    with pytest.raises(PluginError, match=r'distiller "broken" returned Tensor, expected a ddcore.DistilledSet') as info:
        run({**BASE, "distill": "broken"}, [BrokenPlugin()], write=False)
    assert info.value.plugin == "broken"


def test_plugin_state_travels_inside_the_distillers_checkpoint_and_a_resume_ends_as_an_uninterrupted_run(tmp_path):
    whole = TopRowFrozen()
    expected = run({**BASE, "distill": "shift", "out": str(tmp_path / "whole")}, [ShiftPlugin(), whole])

    cut = tmp_path / "cut"
    first = TopRowFrozen()
    crash = r'distiller "shift": plugin "shift-plugin" raised RuntimeError: interrupted at step 2'
    with pytest.raises(PluginCrash, match=crash):  # the error names the plugin the distiller came from
        run({**BASE, "distill": "shift", "out": str(cut)}, [ShiftPlugin(interrupt_at=2), first])
    saved = torch.load(checkpoint_paths(cut / "checkpoints", "shift")[0], weights_only=True)
    assert saved["distiller"] == "shift" and saved["step"] == 2 and saved["plugins"] == {"frozen-top": {"calls": 2}}

    # Resume with the recorded config, the plugin objects passed again (without the interruption).
    second = TopRowFrozen()
    resumed = resume_run(cut, [ShiftPlugin(), second])
    assert second.loaded == [{"calls": 2}] and second.calls == whole.calls == 4
    assert torch.equal(resumed.distilled.images, expected.distilled.images)


def test_a_checkpoint_with_the_state_of_a_plugin_that_is_not_active_stops_the_resume(tmp_path):
    cut = tmp_path / "cut"
    with pytest.raises(PluginCrash):
        run({**BASE, "distill": "shift", "shift": {"fail_at": 1}, "out": str(cut)}, [ShiftPlugin(), TopRowFrozen()])
    with pytest.raises(ConfigError, match=r"the checkpoint holds the state of plugin 'frozen-top', which is not active"):
        resume_run(cut, [ShiftPlugin()])


def test_dd_distillers_lists_the_built_in_and_plugin_distillers(cli, tmp_path):
    code, out, err = cli("distillers", "--json")
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["tm"]["plugin"] == "tm" and rows["tm"]["calls"] == ["dd_pixel_weights", "dd_supervision_weights"]
    assert rows["none"]["calls"] == [] and rows["tm"]["table"] == "[tm]"


def test_an_unknown_distiller_on_the_command_line_is_one_line_with_exit_2(cli, tmp_path):
    result = cli("run", "--distill", "nope", "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"))
    assert_cli_error(result, 'unknown distiller "nope" (option --distill)', "Registered: none, tm")
    assert not (tmp_path / "r").exists()
