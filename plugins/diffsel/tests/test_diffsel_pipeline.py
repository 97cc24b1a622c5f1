"""Whole runs on digits with a tiny self-trained prior: stitching, the saved pool, consistency, baselines."""

import json
import pathlib

import pytest
import torch

from diffsel_support import TINY_PRIOR


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache per module, so the tiny prior is trained once."""
    return str(tmp_path_factory.mktemp("diffsel-cache"))


def _options(**extra):
    return {"pool_per_class": 6, "n_noise": 1, "batch_size": 30, "train": dict(TINY_PRIOR), **extra}


def _selection_file(result):
    return json.loads((result.out_dir / "diffsel_selection.json").read_text())


def test_a_larger_ipc_reuses_the_pool_and_extends_the_smaller_one(run_tiny, shared_cache, tmp_path):
    options = _options(factor=2, per_image=2, assembly="prefix")
    small = run_tiny(plugins=["diffsel"], ipc=1, cache_dir=shared_cache, eval={"runs": 0}, write=True,
                     out=str(tmp_path / "ipc1"), plugin={"diffsel": options})  # fmt: skip
    large = run_tiny(plugins=["diffsel"], ipc=2, cache_dir=shared_cache, eval={"runs": 0}, write=True,
                     out=str(tmp_path / "ipc2"), plugin={"diffsel": options})  # fmt: skip
    assert small.distilled.images.shape == (10, 1, 32, 32) and large.distilled.images.shape == (20, 1, 32, 32)
    pool_small, pool_large = small.manifest["records"]["diffsel/pool"], large.manifest["records"]["diffsel/pool"]
    assert pool_small["key"] == pool_large["key"] and pool_large["reused"] and pool_small["candidates"] == 120
    chosen_small, chosen_large = _selection_file(small), _selection_file(large)
    for c in range(10):  # 4 patches per image and class: IPC 1's are IPC 2's first four
        first = list(zip(chosen_small["index"], chosen_small["boxes"]))[4 * c : 4 * c + 4]
        assert first == list(zip(chosen_large["index"], chosen_large["boxes"]))[8 * c : 8 * c + 4]
        assert torch.equal(small.distilled.images[c], large.distilled.images[2 * c])  # the same stitched image
    # cell (0, 0) of the first image is the first winner's 16 px patch, cut from its source image
    from ddcore.data.digits import load_digits_dataset
    from ddcore import DatasetOptions

    digits = load_digits_dataset(DatasetOptions())
    top, left, h, w = chosen_small["boxes"][0]
    source, _ = digits.train[chosen_small["index"][0]]
    assert (h, w) == (16, 16)
    torch.testing.assert_close(small.distilled.images[0, :, :16, :16], source[:, top : top + 16, left : left + 16])


def test_one_seed_one_result_and_the_pool_rebuilt_identically(run_tiny, shared_cache):
    first = run_tiny(plugins=["diffsel"], cache_dir=shared_cache, eval={"runs": 0}, plugin={"diffsel": _options()})
    again = run_tiny(plugins=["diffsel"], cache_dir=shared_cache, eval={"runs": 0},
                     plugin={"diffsel": _options(reuse_pool=False)})  # fmt: skip
    assert not again.manifest["records"]["diffsel/pool"]["reused"]
    assert torch.equal(first.distilled.images, again.distilled.images)
    assert first.distilled.labels.tolist() == list(range(10))
    # factor 1 with whole-image windows: the selection is whole training images, so indices are kept
    assert first.distilled.meta["diffsel"]["factor"] == 1


def test_observer_baseline_with_teacher_labels_and_the_kd_evaluator(run_tiny, shared_cache):
    options = _options(scorer="observer", labels="teacher", teacher_epochs=1, kd={"runs": 1, "epochs": 2})
    result = run_tiny(plugins=["diffsel"], cache_dir=shared_cache, eval={"runs": 0}, plugin={"diffsel": options})
    assert result.distilled.labels.shape == (10, 10) and result.distilled.labels.dtype == torch.float32
    assert result.distilled.meta["diffsel"]["ranking"] == "score"
    assert 0 <= result.metrics["diffsel/kd_acc_mean"] <= 100 and len(result.metrics["diffsel/kd_acc_runs"]) == 1
    assert result.manifest["records"]["diffsel/kd"]["recipe"]["flip"] is False  # digits: no flips
    pool = result.manifest["records"]["diffsel/pool"]
    assert pool["candidates"] == 60 and pathlib.Path(pool["path"]).is_file()  # one best crop per pool image


def test_random_real_selection_is_left_alone_but_evaluated_by_kd(run_tiny, shared_cache):
    options = _options(teacher_epochs=1, kd={"runs": 1, "epochs": 1})
    result = run_tiny(plugins=["diffsel"], select="random-real", cache_dir=shared_cache, eval={"runs": 0},
                      plugin={"diffsel": options})  # fmt: skip
    assert result.distilled.meta["selected_by"] == "random-real"
    assert result.distilled.meta["initialized_by"] == "as-selected"  # diffsel abstains for others' selections
    assert "diffsel/kd_acc_mean" in result.metrics


@pytest.mark.slow
@pytest.mark.parametrize("others", [[], ["edf"]], ids=["tm", "tm+edf"])
def test_trajectory_matching_starts_from_the_diffsel_set(run_tiny, shared_cache, others):
    tm = {"preset": "none", "iterations": 2, "syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 1,
          "cur_max_start_epoch": 1, "checkpoint_every": 0}  # fmt: skip
    selected = run_tiny(plugins=["diffsel"], cache_dir=shared_cache, eval={"runs": 0}, plugin={"diffsel": _options()})
    result = run_tiny(plugins=["diffsel", *others], cache_dir=shared_cache, distill="tm", tm=tm,
                      experts={"num": 1, "epochs": 2}, eval={"runs": 0}, plugin={"diffsel": _options()})  # fmt: skip
    assert result.distilled.meta["selected_by"] == "diffsel" and result.distilled.meta["initialized_by"] == "diffsel"
    assert result.manifest["records"]["tm"]["iterations"] == 2
    assert result.manifest["records"]["diffsel/pool"]["reused"]
    assert not torch.equal(result.distilled.images, selected.distilled.images)  # matching moved the diffsel set
    assert (result.distilled.images - selected.distilled.images).abs().mean() < 1.0  # ... starting from it
