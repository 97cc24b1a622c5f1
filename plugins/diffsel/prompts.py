"""Class names -> the text prompts of a latent text prior: one distinct, unambiguous prompt per class.

ImageNet's short names (the first lemma of each class's WordNet synset) are not enough for a text
encoder: three pairs of classes share a name once case is ignored, as CLIP's tokenizer ignores it
(``crane`` the bird n02012849 and the machine n03126707; ``maillot`` n03710637 and n03710721;
``Cardigan`` the corgi n02113186 and ``cardigan`` the sweater n02963159), and others name a more common
sense than the class's (``kite`` is the bird of prey, ``amphibian`` the vehicle, ``organ`` the pipe
organ ...; several are in the Comp-DD subsets). When a dataset maps its classes to ImageNet-1K (by
``extra["imagenet_index"]``, ``extra["wnids"]`` or class names that are wnids), the name of the class
is the phrase of :data:`WORDNET_PHRASES` for its WordNet id when it has one (the synset's lemma with
the head noun of its gloss or hypernym, written by hand from WordNet 3.0, in the spirit of CLIP's
curated ImageNet names), else its short name; ``_`` is read as a space. Other datasets use their class
names.

Prompts must be distinct per class within a run, compared as the CLIP tokenizer sees them (lower
case, runs of white space as one): :func:`class_prompts` raises a one-line ``PluginError`` naming the
classes otherwise (e.g. class folders ``Crane`` and ``crane``), before any scoring.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from ddcore import PluginError

#: WordNet id -> the phrase used for the class (ImageNet-1K classes whose short name is shared or
#: misleading). Index of each class in the shipped class index in the comment.
WORDNET_PHRASES: Mapping[str, str] = {
    # short names shared by two classes (ignoring case)
    "n02012849": "crane bird",  # 134 crane: a large long-necked wading bird
    "n03126707": "construction crane",  # 517 crane: a lifting machine
    "n03710637": "maillot, dancer's tights",  # 638 maillot: tights for dancers or gymnasts
    "n03710721": "tank suit, one-piece bathing suit",  # 639 maillot, tank suit: a woman's one-piece bathing suit
    "n02113186": "Cardigan Welsh corgi",  # 264 Cardigan: the corgi breed
    "n02963159": "cardigan sweater",  # 474 cardigan: a knitted jacket
    # short names whose everyday sense is not the class
    "n01608432": "kite, bird of prey",  # 21 kite
    "n01685808": "whiptail lizard",  # 41
    "n01687978": "agama lizard",  # 42
    "n01755581": "diamondback rattlesnake",  # 67
    "n01756291": "sidewinder rattlesnake",  # 68
    "n01770081": "harvestman, daddy longlegs",  # 70
    "n02108089": "boxer dog",  # 242
    "n02277742": "ringlet butterfly",  # 322
    "n02279972": "monarch butterfly",  # 323
    "n02281787": "lycaenid butterfly",  # 326
    "n02389026": "sorrel horse",  # 339
    "n02514041": "barracouta fish",  # 389
    "n02536864": "coho salmon",  # 391
    "n02641379": "gar fish",  # 395
    "n02655020": "puffer fish",  # 397
    "n02704792": "amphibious vehicle",  # 408 amphibian
    "n02879718": "archery bow",  # 456 bow
    "n03017168": "chime, tubular bells",  # 494
    "n03250847": "drumstick for a drum",  # 542
    "n03459775": "radiator grille of a car",  # 581 grille
    "n03832673": "notebook computer",  # 681
    "n03854065": "pipe organ",  # 687 organ
    "n03930630": "pickup truck",  # 717
    "n04019541": "ice hockey puck",  # 746
    "n04037443": "racing car",  # 751 racer
    "n04039381": "tennis racket",  # 752
    "n04141076": "saxophone",  # 776 sax
    "n04389033": "army tank",  # 847
    "n04515003": "upright piano",  # 881 upright
    "n09229709": "soap bubble",  # 971
    "n09835506": "baseball player",  # 981 ballplayer
}

_WNID = re.compile(r"n\d{8}")


def imagenet_wnids(dataset) -> list[str] | None:
    """The WordNet id of each class when the dataset maps its classes to ImageNet-1K, else ``None``."""
    from ddcore_data import imagenet_class_index

    table = imagenet_class_index()
    index = dataset.extra.get("imagenet_index")
    if index:
        return [table[int(i)][0] for i in index]
    wnids = dataset.extra.get("wnids")
    if wnids:
        return [str(w) for w in wnids]
    names = [str(name) for name in dataset.class_names]
    known = {wnid for wnid, _ in table.values()}
    if names and all(_WNID.fullmatch(name) and name in known for name in names):
        return names
    return None


def class_prompt_names(dataset) -> list[str]:
    """The name put in each class's prompt (see the module docstring), in label order."""
    wnids = imagenet_wnids(dataset)
    if wnids is None:
        return [str(name).replace("_", " ") for name in dataset.class_names]
    from ddcore_data import imagenet_class_index

    short = {wnid: name for wnid, name in imagenet_class_index().values()}
    return [WORDNET_PHRASES.get(wnid) or short.get(wnid, wnid).replace("_", " ") for wnid in wnids]


def prompt_key(text: str) -> str:
    """A prompt as CLIP's tokenizer compares it: lower case, white space collapsed.

    >>> prompt_key("a photo of a  Crane ")
    'a photo of a crane'
    """
    return " ".join(text.lower().split())


def check_distinct(prompts: Sequence[str], class_names: Sequence[str]) -> None:
    """Raise ``PluginError`` (one line) when two classes would get the same prompt."""
    seen: dict[str, int] = {}
    for label, text in enumerate(prompts):
        other = seen.setdefault(prompt_key(text), label)
        if other != label:
            raise PluginError(
                f"classes {class_names[other]!r} and {class_names[label]!r} would get the same prompt {text!r} "
                "(a text encoder ignores case and spacing); give the classes distinct names (config key plugin.diffsel.prompt)",
                plugin="diffsel",
            )


def class_prompts(dataset, template: str) -> list[str]:
    """``template`` (``{name}`` = :func:`class_prompt_names`) for every class, in label order, checked distinct.

    Raises:
        PluginError: two classes would get the same prompt.
    """
    prompts = [template.format(name=name) for name in class_prompt_names(dataset)]
    check_distinct(prompts, [str(name) for name in dataset.class_names])
    return prompts
