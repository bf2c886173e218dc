"""The DSR-Dataset generator: seeded, type-balanced train/test prompt sets.

Each split is balanced over the DSR types (counts differ by at most one), over animals
and over indoor/outdoor scenes. Every (animal, object, scene) combination is used at most
once in the whole dataset, so train and test are disjoint in those combinations. The
test split is drawn first from the seed alone, so it does not change with ``n_train``.
"""

from __future__ import annotations

import random

from spatialalign.core.dsr.grammar import FORMS, format_prompt
from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.dsr.vocab import (
    ANIMAL_VERBS,
    ANIMALS,
    INDOOR_OBJECTS,
    INDOOR_SCENES,
    OUTDOOR_OBJECTS,
    OUTDOOR_SCENES,
    dsr_types,
)
from spatialalign.core.errors import SpatialAlignError

MIXED = "mixed"
"""``form`` value drawing each prompt's phrasing from :data:`FORMS`, balanced."""

_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "indoor": (INDOOR_OBJECTS, INDOOR_SCENES),
    "outdoor": (OUTDOOR_OBJECTS, OUTDOOR_SCENES),
}


def _balanced(items: tuple[str, ...], n: int, rng: random.Random) -> list[str]:
    """``n`` items, each used ``n // len`` or one more times, in random order."""
    reps, extra = divmod(n, len(items))
    out = list(items) * reps + rng.sample(list(items), extra)
    rng.shuffle(out)
    return out


def capacity() -> int:
    """How many prompts fit before (animal, object, scene) combinations run out."""
    return sum(len(ANIMALS) * len(objs) * len(scenes) for objs, scenes in _KINDS.values())


def _split(
    name: str,
    n: int,
    types: tuple[str, ...],
    used: set[tuple[str, str, str]],
    rng: random.Random,
    form: str,
) -> list[DSRPrompt]:
    forms = _balanced(FORMS, n, rng) if form == MIXED else [form] * n
    kinds = _balanced(tuple(_KINDS), n, rng)
    animals = _balanced(ANIMALS, n, rng)
    type_list = _balanced(types, n, rng)
    objects = {k: _balanced(objs, kinds.count(k), rng) for k, (objs, _) in _KINDS.items()}
    prompts: list[DSRPrompt] = []
    for i in range(n):
        kind, animal, dsr_type = kinds[i], animals[i], type_list[i]
        obj = objects[kind].pop()
        triple = _pick(animal, obj, kind, used, rng)
        used.add(triple)
        animal, obj, scene = triple
        p = DSRPrompt(
            animal=animal,
            object=obj,
            initial=dsr_type[0],
            final=dsr_type[1],
            scene=scene,
            verb=rng.choice(ANIMAL_VERBS[animal]),
            prompt_id=f"{name}_{i + 1:04d}_{dsr_type}",
            split=name,
        )
        prompts.append(DSRPrompt(**{**p.to_dict(), "text": format_prompt(p, forms[i])}))
    return prompts


def _pick(
    animal: str, obj: str, kind: str, used: set[tuple[str, str, str]], rng: random.Random
) -> tuple[str, str, str]:
    """An unused (animal, object, scene): the wanted pair in a free scene of its kind if
    possible, else another object of that kind, else any free combination."""
    objs, scenes = _KINDS[kind]
    for candidates in (
        [(animal, obj, s) for s in scenes],
        [(animal, o, s) for o in objs for s in scenes],
        [(a, o, s) for os_, ss in _KINDS.values() for a in ANIMALS for o in os_ for s in ss],
    ):
        free = [c for c in candidates if c not in used]
        if free:
            return rng.choice(free)
    raise SpatialAlignError("ran out of (animal, object, scene) combinations")  # unreachable


def generate_dataset(
    n_train: int,
    n_test: int,
    seed: int = 0,
    form: str = "then",
    include_bottom: bool = False,
) -> list[DSRPrompt]:
    """The DSR-Dataset: ``n_train`` then ``n_test`` prompts (split ``"train"``/``"test"``).

    Ids are ``train_0001_LR`` style; texts use ``form`` (``"then"`` or ``"from-to"``, or
    ``"mixed"``: each phrasing for half of each split, drawn by seed).
    The toy model's draw (500 / 120, seed 0) is :data:`spatialalign.prompts.splits.TOY_SPLIT`.
    """
    if n_train < 0 or n_test < 0:
        raise SpatialAlignError(f"prompt counts must be >= 0, got train={n_train} test={n_test}")
    if n_train + n_test == 0:
        raise SpatialAlignError("nothing to generate: train and test are both 0")
    if form not in (*FORMS, MIXED):
        raise SpatialAlignError(f"unknown prompt form {form!r} (expected one of {(*FORMS, MIXED)})")
    limit = capacity()
    if n_train + n_test > limit:
        raise SpatialAlignError(
            f"{n_train + n_test} prompts requested but only {limit} distinct "
            "(animal, object, scene) combinations exist"
        )
    rng = random.Random(seed)
    types = dsr_types(include_bottom)
    used: set[tuple[str, str, str]] = set()
    test = _split("test", n_test, types, used, rng, form)
    train = _split("train", n_train, types, used, rng, form)
    return train + test
