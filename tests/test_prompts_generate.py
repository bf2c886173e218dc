"""The DSR-Dataset generator: balance, disjointness, determinism, round trips through files."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from spatialalign.core.errors import SpatialAlignError
from spatialalign.prompts import (
    ANIMAL_VERBS,
    ANIMALS,
    INDOOR_OBJECTS,
    INDOOR_SCENES,
    OBJECTS,
    OUTDOOR_OBJECTS,
    OUTDOOR_SCENES,
    SCENES,
    DSRPrompt,
    generate_dataset,
    parse_prompt,
    read_prompts,
    write_official_csv,
    write_prompts,
)
from spatialalign.prompts.splits import TOY_SPLIT

PAPER_TYPES = {"LR", "LT", "RL", "RT", "TL", "TR"}


@pytest.fixture(scope="module")
def default_set() -> list[DSRPrompt]:
    return TOY_SPLIT.prompts()


def _split(prompts: list[DSRPrompt], name: str) -> list[DSRPrompt]:
    return [p for p in prompts if p.split == name]


def test_default_sizes_ids_and_splits(default_set: list[DSRPrompt]) -> None:
    train, test = _split(default_set, "train"), _split(default_set, "test")
    assert (len(train), len(test), len(default_set)) == (500, 120, 620)
    ids = [p.prompt_id for p in default_set]
    assert len(set(ids)) == len(ids)
    for p in default_set:
        m = re.fullmatch(r"(train|test)_(\d{4})_([LRTB]{2})", p.prompt_id)
        assert m is not None, p.prompt_id
        assert m.group(1) == p.split and m.group(3) == p.dsr_type


def test_balanced_over_types_animals_and_settings(default_set: list[DSRPrompt]) -> None:
    for name, n in (("train", 500), ("test", 120)):
        split = _split(default_set, name)
        types = Counter(p.dsr_type for p in split)
        assert set(types) == PAPER_TYPES
        assert max(types.values()) - min(types.values()) <= 1
        assert sum(types.values()) == n
        animals = Counter(p.animal for p in split)
        assert set(animals) == set(ANIMALS)
        assert max(animals.values()) - min(animals.values()) <= 1
        indoor = sum(p.scene in INDOOR_SCENES for p in split)
        assert abs(2 * indoor - n) <= 1
    assert Counter(p.dsr_type for p in _split(default_set, "test")) == dict.fromkeys(
        PAPER_TYPES, 20
    )


def test_train_and_test_disjoint_in_combinations(default_set: list[DSRPrompt]) -> None:
    combos = {
        name: [(p.animal, p.object, p.scene) for p in _split(default_set, name)]
        for name in ("train", "test")
    }
    assert not set(combos["train"]) & set(combos["test"])
    for name in combos:  # and no combination repeats inside a split either
        assert len(set(combos[name])) == len(combos[name])


def test_vocabulary_and_settings_are_consistent(default_set: list[DSRPrompt]) -> None:
    for p in default_set:
        assert p.animal in ANIMALS and p.object in OBJECTS and p.scene in SCENES
        assert p.verb in ANIMAL_VERBS[p.animal]
        assert p.initial != p.final
        if p.object in INDOOR_OBJECTS:
            assert p.scene in INDOOR_SCENES
        else:
            assert p.object in OUTDOOR_OBJECTS and p.scene in OUTDOOR_SCENES


def test_scenes_name_no_animal_or_object() -> None:
    names = set(ANIMALS) | set(OBJECTS)
    for scene in SCENES:
        words = {w.strip(",.'").lower() for w in scene.split()}
        words |= {w[:-1] for w in words if w.endswith("s")}  # plurals
        assert not words & names, scene
    assert len(set(SCENES)) == len(SCENES) >= 20


def test_deterministic_and_seed_dependent() -> None:
    a = generate_dataset(n_train=60, n_test=30, seed=7)
    assert a == generate_dataset(n_train=60, n_test=30, seed=7)
    assert a != generate_dataset(n_train=60, n_test=30, seed=8)
    # the test split depends on the seed only, not on how many training prompts follow
    assert _split(a, "test") == _split(generate_dataset(n_train=5, n_test=30, seed=7), "test")


@pytest.mark.parametrize("form", ["then", "from-to"])
def test_generated_texts_parse_back(form: str) -> None:
    prompts = generate_dataset(n_train=120, n_test=60, seed=3, form=form, include_bottom=True)
    for p in prompts:
        q = parse_prompt(p.text)
        assert (q.animal, q.object, q.scene, q.verb, q.initial, q.final) == (
            p.animal,
            p.object,
            p.scene,
            p.verb,
            p.initial,
            p.final,
        )
    if form == "from-to":
        assert all(" from the " in p.text and " then " not in p.text for p in prompts)


def test_bottom_types_are_opt_in() -> None:
    prompts = generate_dataset(n_train=120, n_test=24, seed=1, include_bottom=True)
    types = Counter(p.dsr_type for p in _split(prompts, "test"))
    assert len(types) == 12 and set(types.values()) == {2}
    assert {"LB", "BL", "TB", "BT", "RB", "BR"} <= set(types)


def test_file_round_trips(tmp_path: Path) -> None:
    prompts = generate_dataset(n_train=40, n_test=20, seed=5)
    assert read_prompts(write_prompts(prompts, tmp_path / "p.parquet")) == prompts
    assert read_prompts(write_official_csv(prompts, tmp_path / "o.csv")) == prompts
    strict = read_prompts(write_official_csv(prompts, tmp_path / "s.csv", with_split=False))
    assert strict == [DSRPrompt(**{**p.to_dict(), "split": ""}) for p in prompts]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_train": -1, "n_test": 120}, ">= 0"),
        ({"n_train": 0, "n_test": 0}, "nothing to generate"),
        ({"n_train": 500, "n_test": 120, "form": "sideways"}, "form"),
        ({"n_train": 5000, "n_test": 120}, "combinations"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(SpatialAlignError, match=match):
        generate_dataset(**kwargs)  # type: ignore[arg-type]


def test_large_request_stays_disjoint() -> None:
    prompts = generate_dataset(n_train=1700, n_test=200, seed=2)
    combos = [(p.animal, p.object, p.scene) for p in prompts]
    assert len(set(combos)) == len(combos) == 1900
