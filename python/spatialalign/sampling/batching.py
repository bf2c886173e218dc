"""``--batch-size``: videos generated together in one pipeline call, one definition for
``sample``, ``eval`` and the loop (the videos do not depend on it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

DEFAULT_BATCH_SIZE = {"toy": 16, "wan": 1}
"""Per model: the toy model's clips are tiny; 81 Wan frames at 480x832 fill a GPU quickly."""


def batch_size_field() -> Any:
    """The ``--batch-size`` setting (``None``: the model's :data:`DEFAULT_BATCH_SIZE`)."""
    return field(
        default=None,
        metadata={
            "help": "Videos generated together [toy 16, wan 1].",
            "type": click.IntRange(min=1),
        },
    )


@dataclass(frozen=True)
class BatchSpec:
    """How many videos one pipeline call generates (the verbs derive ``--batch-size``)."""

    batch_size: int | None = batch_size_field()


def resolve_batch_size(batch_size: int | None, model: str) -> int:
    """``batch_size``, or the model's default when None."""
    return batch_size if batch_size is not None else DEFAULT_BATCH_SIZE.get(model, 1)
