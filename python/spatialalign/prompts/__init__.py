"""The ``prompts`` stage: the seeded DSR-Dataset generator and the toy split; the prompt
language itself (:class:`DSRPrompt`, the grammar, prompt files) is
:mod:`spatialalign.core.dsr`, re-exported here for users' convenience."""

from spatialalign.core import dsr as _dsr
from spatialalign.core.dsr import *  # noqa: F403 - the language, as listed in its __all__
from spatialalign.prompts.generate import generate_dataset
from spatialalign.prompts.splits import TOY_SPLIT, ToySplit

__all__ = [*_dsr.__all__, "TOY_SPLIT", "ToySplit", "generate_dataset"]
