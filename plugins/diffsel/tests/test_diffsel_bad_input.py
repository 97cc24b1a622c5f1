"""Bad input stops before any work with one line naming the problem and the key to change."""

import pytest

from ddcore import ConfigError, PluginError

from diffsel_support import TINY_PRIOR


def _run(run_tiny, tmp_path, **options):
    return run_tiny(plugins=["diffsel"], eval={"runs": 0}, plugin={"diffsel": {"pool_per_class": 4, "n_noise": 1, **options}})


def _no_pool_written(tmp_path):
    return not list(tmp_path.glob("cache/diffsel/pools/*.pt"))


def test_a_prior_folder_that_does_not_exist(run_tiny, tmp_path):
    with pytest.raises(PluginError, match=r"does not exist \(config key plugin.diffsel.prior\)"):
        _run(run_tiny, tmp_path, prior=f"local-dir:{tmp_path / 'nowhere'}")
    assert _no_pool_written(tmp_path)


def test_a_folder_that_is_not_a_diffusion_model(run_tiny, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(PluginError, match="is not a diffusion model"):
        _run(run_tiny, tmp_path, prior=f"local-dir:{tmp_path / 'junk'}")
    assert _no_pool_written(tmp_path)


def test_a_hub_id_that_is_not_in_the_cache(run_tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(PluginError, match="not in the Hugging Face cache"):
        _run(run_tiny, tmp_path, prior="hf-hub:someone/no-such-model")


def _saved_prior(tmp_path, classes):
    """An untrained pixel prior (8 px, two levels: sides must be even) saved for ``classes``."""
    import torch

    from ddcore_diffsel.pixel_prior import build_scheduler, build_unet, save_prior

    with torch.random.fork_rng(devices=[]):
        unet = build_unet(8, 1, len(classes), [8, 16])
    folder = tmp_path / "saved-prior"
    save_prior(folder, unet, build_scheduler(), classes, {"steps": 0, "key": "test"})
    return folder


def test_a_prior_trained_on_other_classes(run_tiny, tmp_path):
    folder = _saved_prior(tmp_path, ["cat", "dog"])
    with pytest.raises(PluginError, match=r"trained on other classes: it does not know '0', '1'"):
        _run(run_tiny, tmp_path, prior=f"local-dir:{folder}")
    assert _no_pool_written(tmp_path)


def test_an_image_size_the_prior_cannot_take(run_tiny, tmp_path):
    folder = _saved_prior(tmp_path, [str(d) for d in range(10)])
    with pytest.raises(PluginError, match=r"cannot take 9 px images: its UNet needs a side divisible by 2 \(config key plugin.diffsel.resolution\)"):
        _run(run_tiny, tmp_path, prior=f"local-dir:{folder}", resolution=9)
    assert _no_pool_written(tmp_path)


def test_timesteps_outside_the_schedule(run_tiny, tmp_path):
    with pytest.raises(PluginError, match=r"timesteps \[1000\] are outside the prior's 0..999"):
        _run(run_tiny, tmp_path, timesteps=[1000], prior=f"local-dir:{_saved_prior(tmp_path, [str(d) for d in range(10)])}")
    assert _no_pool_written(tmp_path)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"prior": "/some/path"}, "expected 'auto', 'local-dir:PATH' or 'hf-hub:ORG/NAME'"),
        ({"n_noise": 0}, "plugin.diffsel.n_noise' must be at least 1"),
        ({"max_iou": 0.0}, "plugin.diffsel.max_iou' must be in"),
        ({"prompt": "a photo"}, "must contain {name}"),
        ({"features": "teacher"}, "needs 'plugin.diffsel.teacher'"),
        ({"teacher": "resnet"}, "plugin.diffsel.teacher': expected"),
        ({"kd": {"temperature": 0}}, "plugin.diffsel.kd.temperature' must be > 0"),
        ({"train": {"channels": [12]}}, "plugin.diffsel.train.channels"),
        ({"scorer": "clip"}, "plugin.diffsel.scorer': expected one of"),
    ],
)
def test_bad_options_are_config_errors_before_any_work(run_tiny, options, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("{", r"\{").replace("}", r"\}")):
        run_tiny(plugins=["diffsel"], plugin={"diffsel": options})


def test_an_ipc_the_pool_cannot_serve(run_tiny, tmp_path):
    with pytest.raises(PluginError, match="raise plugin.diffsel.pool_per_class"):
        run_tiny(plugins=["diffsel"], ipc=5, eval={"runs": 0}, plugin={"diffsel": {"pool_per_class": 4, "train": TINY_PRIOR}})
    assert not list(tmp_path.glob("cache/diffsel/priors/*"))  # stopped before training the prior


def test_the_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    from ddcore_cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--plugin", "diffsel", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--quiet",
              "--set", f"plugin.diffsel.prior='local-dir:{tmp_path / 'missing'}'"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error [diffsel]:") and "does not exist" in err[0]


def test_timesteps_beyond_the_prior_schedule_are_refused_before_the_prior_trains(tmp_path):
    from ddcore.config import from_mapping
    from ddcore_diffsel.config import DiffselConfig

    with pytest.raises(ConfigError, match=r"timesteps': 5000 is beyond the trained prior's schedule \(timesteps 0\.\.999"):
        from_mapping(DiffselConfig, {"timesteps": [5000]}, prefix="plugin.diffsel.")
    assert from_mapping(DiffselConfig, {"timesteps": [999]}, prefix="plugin.diffsel.").timesteps == [999]
