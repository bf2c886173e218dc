"""Where a run's videos succeed and fail: Correct@0.7 and validness per DSR type, and the
invalid videos by rejection reason.

``compare`` writes both tables under its main one (``comparison.md``) and their numbers into
``comparison.json`` (``breakdown``), so a comparison of base and aligned shows which
relations the method moves and which rejections it leaves. The figures are the same
``score-batch`` puts in ``summary.json`` (``per_type``, ``counts.reasons``): a hit is a valid
video with DSR >= the official grid's 0.7, rates are over all the type's videos.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from spatialalign.scoring.summary import HEADLINE_INDEX, THRESHOLDS

UNKNOWN_TYPE = "?"
"""The type of a scored prompt the run's prompt file does not hold."""


@dataclass(frozen=True)
class TypeFigures:
    """One DSR type's videos in one run."""

    videos: int
    validness: float
    correctness: float
    """Correct@0.7 over the type's videos (invalid ones count as wrong)."""


@dataclass(frozen=True)
class RunBreakdown:
    """One run's figures per DSR type and its invalid videos per rejection reason."""

    name: str
    per_type: dict[str, TypeFigures] = field(default_factory=dict)
    """Empty when the run's prompts (their DSR types) are unknown."""
    reasons: dict[str, int] = field(default_factory=dict)
    """Invalid videos per rejection reason (``scores.parquet``'s ``reason``), sorted by name."""


def run_breakdown(
    name: str, scores: pa.Table, dsr_types: Mapping[str, str] | None = None
) -> RunBreakdown:
    """The breakdown of one scored run; ``dsr_types`` maps its prompt ids to DSR types
    (``RUN/prompts.parquet``), None for no per-type figures."""
    valid = scores.column("valid").to_numpy(zero_copy_only=False).astype(bool)
    reasons: dict[str, int] = {}
    if "reason" in scores.column_names:
        found = Counter(
            r or "unknown"
            for r, ok in zip(scores.column("reason").to_pylist(), valid, strict=True)
            if not ok
        )
        reasons = dict(sorted(found.items()))
    if dsr_types is None:
        return RunBreakdown(name, {}, reasons)
    dsr = scores.column("dsr").to_numpy(zero_copy_only=False).astype(np.float64)
    hit = valid & (np.nan_to_num(dsr, nan=-np.inf) >= THRESHOLDS[HEADLINE_INDEX])
    types = np.asarray(
        [dsr_types.get(p, UNKNOWN_TYPE) for p in scores.column("prompt_id").to_pylist()],
        dtype=object,
    )
    per_type = {}
    for t in sorted(set(types.tolist())):
        mask = types == t
        n = int(mask.sum())
        per_type[t] = TypeFigures(n, float(valid[mask].mean()), float(hit[mask].mean()))
    return RunBreakdown(name, per_type, reasons)


def breakdown_markdown(runs: Sequence[RunBreakdown]) -> str:
    """Two Markdown tables: Correct@0.7 (validness) per DSR type, a column per run (left
    out when no run knows its types), and invalid videos per rejection reason."""
    parts = []
    types = sorted({t for r in runs for t in r.per_type})
    names = [r.name for r in runs]
    if types:
        lines = [
            "Correct@0.7 (validness) per DSR type:",
            "",
            "| DSR type | videos | " + " | ".join(names) + " |",
            "|" + "---|" * (len(names) + 2),
        ]
        for t in types:
            counts = sorted({r.per_type[t].videos for r in runs if t in r.per_type})
            cells = [
                f"{f.correctness:.3f} ({f.validness:.3f})" if f is not None else "-"
                for f in (r.per_type.get(t) for r in runs)
            ]
            lines.append(f"| {t} | {'/'.join(map(str, counts))} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    reasons = sorted({k for r in runs for k in r.reasons})
    lines = [
        "Invalid videos by rejection reason:",
        "",
        "| reason | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 1),
    ]
    for k in reasons:
        lines.append(f"| {k} | " + " | ".join(str(r.reasons.get(k, 0)) for r in runs) + " |")
    lines.append("| all invalid | " + " | ".join(str(sum(r.reasons.values())) for r in runs) + " |")
    parts.append("\n".join(lines))
    return "\n\n".join(parts)
