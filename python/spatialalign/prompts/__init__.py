"""DSR prompts: the data model, the grammar, prompt files and the DSR-Dataset generator."""

from spatialalign.prompts.model import RELATIONS, DSRPrompt

__all__ = ["RELATIONS", "DSRPrompt"]
