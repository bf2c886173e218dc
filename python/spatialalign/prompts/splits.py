"""The toy split: the one draw of generated prompts that the toy model, its evaluation,
``eval --prompts toy-test`` and the loop share (500 TRAIN / 120 TEST prompts, seed 0).

Defined once here; ``toy-test:N`` is the TEST split of ``ToySplit(n_test=N)`` (the TEST
prompts are drawn first from the seed alone, so they do not depend on ``n_train``).
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

    def prompts(self, split: str | None = None) -> list[DSRPrompt]:
        """The draw's prompts (TRAIN then TEST), or those of ``split`` (train/test)."""
        drawn = generate_dataset(self.n_train, self.n_test, seed=self.seed)
        return drawn if split is None else [p for p in drawn if p.split == split]


TOY_SPLIT = ToySplit()
"""The toy split: 500 TRAIN / 120 TEST prompts, seed 0."""
