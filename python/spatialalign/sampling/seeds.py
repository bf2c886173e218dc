"""Which seeds a run samples: ``--seeds N`` consecutive seeds from ``--first-seed S``.

One definition for ``sample`` and ``eval`` (:class:`SeedRange`, whose fields become both
verbs' ``--seeds``/``--first-seed`` through :func:`spatialalign.core.options.click_options`),
and one check (:func:`check_seeds`) that the loop's settings use too. A video is named
with its true seed (``{prompt_id}_F{frames}_seed{NN}``, ``seed1000`` for seed 1000), and
the manifest's ``seed`` column and each video's provenance record hold it, so runs from
other first seeds are told apart everywhere. The default, seeds ``0..N-1``, is the
paper's evaluation (seeds 0-4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.options import document_fields, from_options

MAX_SEEDS = 1000
"""Most seeds per prompt in one run (the work list is built up front: prompts x seeds)."""
SEED_LIMIT = 2**31
"""Every seed is below this (a signed 32-bit integer: safe for every generator and file)."""


@document_fields
@dataclass(frozen=True)
class SeedRange:
    """The seeds of a run: ``first_seed .. first_seed + seeds - 1``."""

    seeds: int = field(
        default=5,
        metadata={
            "help": f"N, videos per prompt (eval: seed slots per prompt), at most {MAX_SEEDS}; "
            "their seeds are S..S+N-1 (--first-seed S)."
        },
    )
    first_seed: int = field(
        default=0,
        metadata={
            "help": "S, the first seed (>= 0; the paper evaluates seeds 0-4). Videos keep the "
            "official names with their true seed: {prompt_id}_F{frames}_seed{NN}."
        },
    )

    def check(self, per_slot: int = 1) -> None:
        """:func:`check_seeds` of this range."""
        check_seeds(self.seeds, self.first_seed, per_slot=per_slot)

    @property
    def values(self) -> range:
        """The seeds, in order."""
        return range(self.first_seed, self.first_seed + self.seeds)


def check_seeds(
    seeds: int,
    first_seed: int = 0,
    *,
    per_slot: int = 1,
    seeds_flag: str = "--seeds",
    first_flag: str = "--first-seed",
) -> None:
    """Refuses (one line) a seed count outside ``1..MAX_SEEDS``, a negative first seed, or
    a range whose last seed (``first_seed + seeds * per_slot - 1``: ``per_slot`` seeds per
    slot, as ``--best-of`` samples) reaches :data:`SEED_LIMIT`."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise SpatialAlignError(f"{seeds_flag} must be in 1..{MAX_SEEDS}, got {seeds}")
    if first_seed < 0:
        raise SpatialAlignError(f"{first_flag} must be >= 0, got {first_seed}")
    last = first_seed + seeds * per_slot - 1
    if last >= SEED_LIMIT:
        times = f" x {per_slot}" if per_slot > 1 else ""
        raise SpatialAlignError(
            f"{first_flag} {first_seed} + {seeds_flag} {seeds}{times} reaches seed {last}; "
            f"seeds must stay below 2**31 = {SEED_LIMIT}"
        )


def pop_seed_range(options: dict[str, Any]) -> SeedRange:
    """The :class:`SeedRange` of a verb's parsed options (its keys removed), checked."""
    seed_range = from_options(SeedRange, options)
    options.pop("seeds", None)
    options.pop("first_seed", None)
    seed_range.check()
    return seed_range
