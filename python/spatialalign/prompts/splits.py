"""The toy splits: the draws of generated prompts that a toy model, its evaluation,
``eval --prompts toy-test`` and the loop share.

:data:`TOY_SPLIT` (500 TRAIN / 120 TEST, the paper's six DSR types, the "then" phrasing)
is the shipped toy model's; :data:`HARD_SPLIT` (600 / 120, all twelve types of the four
relations, both phrasings) is the hard world's (``toy-hard``). ``toy-test:N`` is the TEST
split of ``ToySplit(n_test=N)`` (the TEST prompts are drawn first from the seed alone, so
they do not depend on ``n_train``); ``toy-hard-test:N`` is the same of the hard split.
:data:`WORLD_SPLITS` names them by toy world, :func:`model_split` by model.
"""

from __future__ import annotations

from dataclasses import dataclass

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.models.registry import model_world
from spatialalign.prompts.generate import generate_dataset


@dataclass(frozen=True)
class ToySplit:
    """A generated TRAIN/TEST draw (:func:`~spatialalign.prompts.generate.generate_dataset`)."""

    n_train: int = 500
    """TRAIN prompts (what the toy model was pretrained on)."""
    n_test: int = 120
    """TEST prompts (``toy-test``; disjoint from TRAIN)."""
    seed: int = 0
    """The generator's seed."""
    include_bottom: bool = False
    """Also the six DSR types with BOTTOM (all four relations)."""
    form: str = "then"
    """The phrasing: ``then``, ``from-to`` or ``mixed`` (both, half each)."""

    def prompts(self, split: str | None = None) -> list[DSRPrompt]:
        """The draw's prompts (TRAIN then TEST), or those of ``split`` (train/test)."""
        drawn = generate_dataset(
            self.n_train,
            self.n_test,
            seed=self.seed,
            form=self.form,
            include_bottom=self.include_bottom,
        )
        return drawn if split is None else [p for p in drawn if p.split == split]


TOY_SPLIT = ToySplit()
"""The toy split: 500 TRAIN / 120 TEST prompts, seed 0."""
HARD_SPLIT = ToySplit(n_train=600, n_test=120, seed=0, include_bottom=True, form="mixed")
"""The hard world's split: 600 TRAIN / 120 TEST prompts (10 per DSR type), all four
relations, both phrasings, seed 0."""
WORLD_SPLITS: dict[str, ToySplit] = {"toy": TOY_SPLIT, "hard": HARD_SPLIT}
"""Toy world (``spatialalign.toy.world.WORLDS``' keys) -> its split."""


def world_split(world: str) -> ToySplit:
    """The split of toy world ``world`` (``toy``, ``hard``); one clear error otherwise."""
    if world not in WORLD_SPLITS:
        raise SpatialAlignError(
            f"unknown toy world {world!r} (choose from {', '.join(WORLD_SPLITS)})"
        )
    return WORLD_SPLITS[world]


def model_split(model: str) -> ToySplit:
    """The split ``model``'s TRAIN and TEST prompts come from: its toy world's
    (``toy-hard``: :data:`HARD_SPLIT`); :data:`TOY_SPLIT` for ``toy`` and for a model of no
    toy world (``wan``, as before the hard world)."""
    return WORLD_SPLITS[model_world(model) or "toy"]
