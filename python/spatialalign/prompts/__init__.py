"""DSR prompts: the data model, the grammar, prompt files and the DSR-Dataset generator."""

from spatialalign.prompts.grammar import (
    FORMS,
    format_prompt,
    parse_prompt,
    parse_prompts,
    parse_relation,
    try_parse_prompt,
)
from spatialalign.prompts.io import (
    OFFICIAL_COLUMNS,
    PROMPT_COLUMNS,
    prompts_table,
    read_prompts,
    write_official_csv,
    write_prompts,
)
from spatialalign.prompts.model import RELATIONS, DSRPrompt

__all__ = [
    "FORMS",
    "OFFICIAL_COLUMNS",
    "PROMPT_COLUMNS",
    "RELATIONS",
    "DSRPrompt",
    "format_prompt",
    "parse_prompt",
    "parse_prompts",
    "parse_relation",
    "prompts_table",
    "read_prompts",
    "try_parse_prompt",
    "write_official_csv",
    "write_prompts",
]
