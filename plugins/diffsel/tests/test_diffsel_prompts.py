"""Text prompts of the latent text prior: one distinct, disambiguated prompt per class (issue 19, kind 7)."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
import torch

from ddcore import PluginError
from ddcore.data.base import ImageDataset, TensorSplit
from ddcore.hookspecs import hookimpl
from ddcore_data import imagenet_class_index
from ddcore_diffsel.prompts import WORDNET_PHRASES, class_prompt_names, class_prompts, prompt_key

TEMPLATE = "a photo of a {name}"


def fake(class_names, **extra):
    return SimpleNamespace(class_names=list(class_names), extra=extra)


def test_the_imagenet_names_shared_by_two_classes_get_distinct_prompts():
    indices = [134, 517, 638, 639, 264, 474]  # crane x2, maillot x2, Cardigan / cardigan
    table = imagenet_class_index()
    shorts = [table[i][1] for i in indices]
    assert len({s.lower() for s in shorts}) == 3  # the input: three names for six classes
    prompts = class_prompts(fake(shorts, imagenet_index=indices), TEMPLATE)
    assert prompts == ["a photo of a crane bird", "a photo of a construction crane", "a photo of a maillot, dancer's tights",
                       "a photo of a tank suit, one-piece bathing suit", "a photo of a Cardigan Welsh corgi",
                       "a photo of a cardigan sweater"]  # fmt: skip


def test_every_imagenet_class_gets_its_own_prompt_and_every_phrase_is_of_a_real_class():
    table = imagenet_class_index()
    names = class_prompt_names(fake([name for _, name in table.values()], imagenet_index=list(table)))
    assert len({prompt_key(n) for n in names}) == 1000
    assert set(WORDNET_PHRASES) <= {wnid for wnid, _ in table.values()}


def test_comp_dd_subsets_read_their_wnids_and_the_misleading_names_are_disambiguated():
    from ddcore_compdd.subsets import resolve_subset

    bird = resolve_subset("bird-easy")
    names = class_prompt_names(fake(bird.class_names, imagenet_index=list(bird.indices), wnids=list(bird.wnids)))
    assert names[bird.class_names.index("crane")] == "crane bird" and names[bird.class_names.index("kite")] == "kite, bird of prey"
    assert names[bird.class_names.index("red-backed_sandpiper")] == "red-backed sandpiper"  # no entry: the short name
    by_wnid = class_prompt_names(fake(list(bird.wnids)))  # imagefolder over ImageNet: folders named by wnid
    assert by_wnid == names


def test_other_datasets_keep_their_names_and_a_collision_is_one_line():
    assert class_prompts(fake(["tabby_cat", "0"]), TEMPLATE) == ["a photo of a tabby cat", "a photo of a 0"]
    with pytest.raises(PluginError, match=r"classes 'Crane' and 'crane' would get the same prompt") as error:
        class_prompts(fake(["Crane", "bird", "crane"]), TEMPLATE)
    assert "\n" not in str(error.value) and "plugin.diffsel.prompt" in str(error.value)
    with pytest.raises(PluginError, match=r"'tank_suit' and 'tank suit'"):
        class_prompts(fake(["tank_suit", "tank suit"]), TEMPLATE)


needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs ddcore[sd]")


@needs_transformers
def test_prompts_the_tokenizer_cuts_to_the_same_tokens_are_refused(tiny_sd_dir):
    from ddcore_diffsel.sources import open_source

    prior = open_source(f"local-dir:{tiny_sd_dir[0]}", "cpu")  # model_max_length 16: BOS + 14 tokens + EOS
    long = "a photo of a very long class name number "
    with pytest.raises(PluginError, match=r"give the same 16 tokens"):
        prior.set_prompts([long + "one", long + "two"])
    prior.set_prompts(["a crane bird", "a construction crane"])
    assert prior.prompts == ["a crane bird", "a construction crane"] and prior.prompt_embeddings.shape[0] == 3
    assert prior.fingerprint()["prompt_texts"] == prior.prompts  # the Stage-I pool's key follows the prompts


class CraneData:
    """A plugin registering ``cranes``: an imagefolder-like dataset whose classes are the two cranes' wnids."""

    name = "cranes"

    @hookimpl
    def dd_register_datasets(self, register):
        def build(_options):
            g = torch.Generator().manual_seed(0)
            labels = torch.arange(2).repeat_interleave(3)
            split = lambda: TensorSplit(torch.rand(6, 3, 16, 16, generator=g), labels)  # noqa: E731
            return ImageDataset(name="cranes", class_names=["n02012849", "n03126707"], train=split(), test=split(),
                                image_shape=(3, 16, 16), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # fmt: skip

        register("cranes", build, description="two ImageNet cranes (test)")


@needs_transformers
def test_the_manifest_records_each_class_prompt(tiny_sd_dir, run_tiny):
    options = {"prior": f"local-dir:{tiny_sd_dir[0]}", "pool_per_class": 2, "n_noise": 1, "batch_size": 4, "resolution": 16}
    result = run_tiny(plugins=["diffsel", CraneData()], dataset="cranes", ipc=1, eval={"runs": 0}, plugin={"diffsel": options})
    record = result.manifest["records"]["diffsel/prompts"]
    assert record == {"template": "a photo of a {name}", "classes": [
        {"label": 0, "class": "n02012849", "wnid": "n02012849", "prompt": "a photo of a crane bird"},
        {"label": 1, "class": "n03126707", "wnid": "n03126707", "prompt": "a photo of a construction crane"}]}  # fmt: skip
