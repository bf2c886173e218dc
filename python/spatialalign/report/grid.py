"""The before/after grid: which prompt/seed pairs to show and what each run has for them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Sample:
    """One run's scored sample of a grid row."""

    sample_id: str
    valid: bool
    dsr: float
    reason: str


def _by_key(table: pa.Table) -> dict[tuple[str, int], Sample]:
    cols = table.select(["sample_id", "prompt_id", "seed", "valid", "dsr", "reason"]).to_pydict()
    out = {}
    for sid, pid, seed, valid, dsr, reason in zip(*cols.values(), strict=True):
        dsr = math.nan if dsr is None else float(dsr)
        out[(str(pid), int(seed))] = Sample(str(sid), bool(valid), dsr, reason or "")
    return out


def shared_samples(
    tables: Sequence[pa.Table], n: int
) -> list[tuple[tuple[str, int], list[Sample]]]:
    """Up to ``n`` (prompt_id, seed) pairs scored in every run, with each run's sample.

    Ordered by how much the DSR changed from the first run to the last (an invalid
    sample counts as 0; either direction), then by prompt and seed, so the grid shows
    where the runs differ rather than the first ids.
    """
    maps = [_by_key(t) for t in tables]
    keys = set(maps[0]).intersection(*maps[1:]) if maps else set()

    def change(key: tuple[str, int]) -> float:
        def score(s: Sample) -> float:
            return s.dsr if s.valid and math.isfinite(s.dsr) else 0.0

        return abs(score(maps[-1][key]) - score(maps[0][key]))

    chosen = sorted(keys, key=lambda k: (-change(k), k))[: max(0, n)]
    return [(k, [m[k] for m in maps]) for k in chosen]
