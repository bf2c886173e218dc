"""The DSR prompt language every stage speaks: the prompt (:class:`DSRPrompt`), its grammar
(parse and format both phrasings), the vocabulary, and prompt files (Parquet, CSV, the
official CSV, JSONL). Generating the DSR-Dataset is the ``prompts`` stage
(:mod:`spatialalign.prompts`); where a run keeps its prompts is :class:`~spatialalign.rundir.RunDir`'s.
"""

from spatialalign.core.dsr.files import (
    OFFICIAL_COLUMNS,
    PROMPT_COLUMNS,
    is_official_csv,
    official_csv_text,
    prompts_from_records,
    prompts_table,
    read_prompts,
    write_official_csv,
    write_prompts,
)
from spatialalign.core.dsr.grammar import (
    FORMS,
    format_prompt,
    parse_prompt,
    parse_prompts,
    parse_relation,
    try_parse_prompt,
)
from spatialalign.core.dsr.model import RELATIONS, DSRPrompt
from spatialalign.core.dsr.vocab import (
    ANIMAL_VERBS,
    ANIMALS,
    BOTTOM_TYPES,
    DSR_TYPES,
    INDOOR_OBJECTS,
    INDOOR_SCENES,
    OBJECTS,
    OUTDOOR_OBJECTS,
    OUTDOOR_SCENES,
    SCENES,
    VERBS,
    dsr_types,
)

__all__ = [
    "ANIMALS",
    "ANIMAL_VERBS",
    "BOTTOM_TYPES",
    "DSR_TYPES",
    "FORMS",
    "INDOOR_OBJECTS",
    "INDOOR_SCENES",
    "OBJECTS",
    "OFFICIAL_COLUMNS",
    "OUTDOOR_OBJECTS",
    "OUTDOOR_SCENES",
    "PROMPT_COLUMNS",
    "RELATIONS",
    "SCENES",
    "VERBS",
    "DSRPrompt",
    "dsr_types",
    "format_prompt",
    "is_official_csv",
    "official_csv_text",
    "parse_prompt",
    "parse_prompts",
    "parse_relation",
    "prompts_from_records",
    "prompts_table",
    "read_prompts",
    "try_parse_prompt",
    "write_official_csv",
    "write_prompts",
]
