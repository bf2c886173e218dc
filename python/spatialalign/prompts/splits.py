"""The toy splits: the draws of generated prompts that a toy model, its evaluation,
``eval --prompts toy-test`` and the loop share.

:data:`TOY_SPLIT` (500 TRAIN / 120 TEST, the paper's six DSR types, the "then" phrasing)
is the shipped toy model's; :data:`HARD_SPLIT` (600 / 120, all twelve types of the four
relations, both phrasings) is the hard world's (``toy-hard``). ``toy-test:N`` is the TEST
split of ``ToySplit(n_test=N)`` (the TEST prompts are drawn first from the seed alone, so
they do not depend on ``n_train``).
"""

from __future__ import annotations

from dataclasses import dataclass

from spatialalign.core.dsr.model import DSRPrompt
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
