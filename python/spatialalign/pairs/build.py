"""Preference pairs from scored samples: the winners and losers DPO trains on.

Per prompt, only *valid* samples take part (an invalid one never trains). With
``tau`` set (the paper's τ_train, 0.7), winners are the samples with DSR >= tau and
losers the other valid ones; every winner x loser combination is a candidate. With
``tau=None`` (the paper's "w/o τ" ablation) any two valid samples with different DSR
form a candidate, the higher-scoring one the winner. At most ``max_per_prompt``
candidates are kept per prompt, drawn at random with a seed derived from the run seed
and the prompt id, so the choice for one prompt does not depend on the others.

``invalid_losers`` (off by default, not the paper's) also makes every invalid sample of a
prompt a loser to each of its winners: the only pairs that tell the model which videos
the tracker rejects (validness), which the paper's pairs never contain.
"""

from __future__ import annotations

import itertools
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from spatialalign.core.errors import SpatialAlignError

DROP_REASONS: tuple[str, ...] = (
    "filtered_animal",
    "no_valid",
    "one_valid",
    "no_winner",
    "no_loser",
    "all_tied",
)
"""Why a prompt gave no pair (counted in :class:`PairReport`)."""


@dataclass(frozen=True)
class PairConfig:
    """How winners and losers are chosen."""

    tau: float | None = 0.7
    """DSR at or above which a valid sample wins; None pairs by relative DSR (no τ)."""
    max_per_prompt: int = 6
    """Most pairs kept per prompt (random subset of the candidates)."""
    seed: int = 0
    """Seeds the choice of the kept pairs."""
    animals: tuple[str, ...] | None = None
    """Keep only prompts of these animals (a transfer probe); None keeps all."""
    invalid_losers: bool = False
    """Invalid samples also lose to the prompt's winners (not the paper's: it never uses
    invalid samples); without tau, to every valid sample."""

    def __post_init__(self) -> None:
        if self.tau is not None and not (0.0 <= self.tau <= 1.0):
            raise SpatialAlignError(f"tau must be in [0, 1], got {self.tau}")
        if self.max_per_prompt < 1:
            raise SpatialAlignError(f"max pairs per prompt must be >= 1, got {self.max_per_prompt}")

    def to_dict(self) -> dict[str, object]:
        """The settings as plain JSON values (recorded in pairs.parquet)."""
        return {
            "tau": self.tau,
            "max_per_prompt": self.max_per_prompt,
            "seed": self.seed,
            "animals": list(self.animals) if self.animals is not None else None,
            "invalid_losers": self.invalid_losers,
        }


@dataclass(frozen=True)
class Pair:
    """One preference pair of the same prompt."""

    prompt_id: str
    winner: str
    loser: str
    dsr_winner: float
    dsr_loser: float


@dataclass
class PairReport:
    """What :func:`build_pairs` kept and why it dropped the rest."""

    prompts: int = 0
    prompts_kept: int = 0
    candidates: int = 0
    pairs: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """The verb's one-line summary."""
        why = ", ".join(f"{n} {r}" for r, n in sorted(self.dropped.items()) if n)
        capped = self.candidates - self.pairs
        return (
            f"pairs: {self.pairs} pair(s) from {self.prompts_kept} of {self.prompts} prompt(s)"
            f" ({capped} candidate(s) over the cap)" + (f"; prompts dropped: {why}" if why else "")
        )


@dataclass(frozen=True)
class ScoredSample:
    """What pairing needs of one row of scores.parquet."""

    sample_id: str
    prompt_id: str
    valid: bool
    dsr: float


def _rng(seed: int, prompt_id: str) -> np.random.Generator:
    """A generator that depends only on the run seed and the prompt (order-free)."""
    return np.random.default_rng([seed, zlib.crc32(prompt_id.encode())])


def _candidates(
    samples: Sequence[ScoredSample], tau: float | None, invalid_losers: bool = False
) -> tuple[list, str | None]:
    """All (winner, loser) candidates of one prompt's valid samples (and, with
    ``invalid_losers``, its invalid ones as losers), or a drop reason."""
    valid = sorted((s for s in samples if s.valid), key=lambda s: s.sample_id)
    invalid = sorted((s for s in samples if not s.valid), key=lambda s: s.sample_id)
    invalid = invalid if invalid_losers else []
    if not valid:
        return [], "no_valid"
    if len(valid) == 1 and not invalid:
        return [], "one_valid"
    if tau is not None:
        winners = [s for s in valid if s.dsr >= tau]
        losers = [s for s in valid if s.dsr < tau] + invalid
        if not winners:
            return [], "no_winner"
        if not losers:
            return [], "no_loser"
        return list(itertools.product(winners, losers)), None
    pairs = [
        (a, b) if a.dsr > b.dsr else (b, a)
        for a, b in itertools.combinations(valid, 2)
        if a.dsr != b.dsr
    ] + list(itertools.product(valid, invalid))
    return (pairs, None) if pairs else ([], "all_tied")


def build_pairs(
    samples: Iterable[ScoredSample],
    cfg: PairConfig,
    animal_of: Mapping[str, str] | None = None,
) -> tuple[list[Pair], PairReport]:
    """Pairs for every prompt of ``samples`` (sorted by prompt id), and the report.

    ``animal_of`` maps prompt id -> animal; it is needed only when ``cfg.animals`` is set.
    """
    by_prompt: dict[str, list[ScoredSample]] = {}
    for s in samples:
        by_prompt.setdefault(s.prompt_id, []).append(s)
    if cfg.animals is not None and animal_of is None:
        raise ValueError("filtering by animal needs animal_of")
    report = PairReport(prompts=len(by_prompt))
    pairs: list[Pair] = []
    for prompt_id in sorted(by_prompt):
        if cfg.animals is not None and animal_of.get(prompt_id) not in cfg.animals:  # type: ignore[union-attr]
            report.dropped["filtered_animal"] += 1
            continue
        candidates, reason = _candidates(by_prompt[prompt_id], cfg.tau, cfg.invalid_losers)
        if reason is not None:
            report.dropped[reason] += 1
            continue
        report.candidates += len(candidates)
        keep = len(candidates)
        if keep > cfg.max_per_prompt:
            chosen = _rng(cfg.seed, prompt_id).choice(keep, cfg.max_per_prompt, replace=False)
            candidates = [candidates[i] for i in sorted(chosen)]
        report.prompts_kept += 1
        pairs += [Pair(prompt_id, w.sample_id, lo.sample_id, w.dsr, lo.dsr) for w, lo in candidates]
    report.pairs = len(pairs)
    return pairs, report
