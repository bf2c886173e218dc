"""``--batch-size``: videos generated together in one pipeline call, one definition for
``sample``, ``eval`` and the loop (the videos do not depend on it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from spatialalign.models.registry import is_toy

TOY_BATCH_SIZE = 16
"""Default for a toy-family model (:func:`~spatialalign.models.registry.is_toy`): its clips
are tiny."""
OTHER_BATCH_SIZE = 1
"""Default for any other model: 81 Wan frames at 480x832 fill a GPU quickly."""


def batch_size_field() -> Any:
    """The ``--batch-size`` setting (``None``: the model's default, :func:`resolve_batch_size`)."""
    return field(
        default=None,
        metadata={
            "help": "Videos generated together [toy, toy-hard 16; wan 1].",
            "type": click.IntRange(min=1),
        },
    )


@dataclass(frozen=True)
class BatchSpec:
    """How many videos one pipeline call generates (the verbs derive ``--batch-size``)."""

    batch_size: int | None = batch_size_field()


def resolve_batch_size(batch_size: int | None, model: str) -> int:
    """``batch_size``, or the model's default when None (:data:`TOY_BATCH_SIZE` for a
    toy-family model, else :data:`OTHER_BATCH_SIZE`)."""
    if batch_size is not None:
        return batch_size
    return TOY_BATCH_SIZE if is_toy(model) else OTHER_BATCH_SIZE
