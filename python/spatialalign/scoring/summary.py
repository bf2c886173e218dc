"""summary.json: Correctness@tau, validness and the per-DSR-type breakdown of a scored run.

The correctness curve uses the official grid ``numpy.arange(0, 1, 0.1)``
(:data:`dsr_geom.OFFICIAL_THRESHOLDS`) bit for bit, as the official
``calc_correctness.py`` does. Its float values are not the decimal ones: the entry
shown as ``"0.7"`` is ``0.7000000000000001`` (and ``"0.3"``, ``"0.6"`` are likewise
a hair above), so a video with DSR exactly 0.7 does *not* count towards
Correctness@0.7 — exactly as in the official numbers. Keys are the one-decimal
labels; the exact floats are listed under ``thresholds``.

Correctness@tau = (valid videos with DSR >= tau) / (all videos, invalid included);
Correctness@0.0 equals the validness rate.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import dsr_geom
import numpy as np
import pyarrow as pa

from spatialalign.core.presets import ScoringConfig

THRESHOLDS: list[float] = list(dsr_geom.OFFICIAL_THRESHOLDS)
HEADLINE_INDEX = 7  # the grid's "0.7" (0.7000000000000001)
HEADLINE_KEY = "0.7"


def threshold_key(tau: float) -> str:
    """The label of a grid threshold: ``0.7000000000000001`` -> ``"0.7"``."""
    return f"{tau:.1f}"


def correctness(dsr: np.ndarray) -> dict[str, float]:
    """Correctness on the official grid; ``dsr`` is NaN for invalid videos."""
    if len(dsr) == 0:
        return {threshold_key(t): math.nan for t in THRESHOLDS}
    curve = dsr_geom.correctness_curve(np.asarray(dsr, dtype=np.float64), THRESHOLDS)
    return {threshold_key(t): float(c) for t, c in zip(THRESHOLDS, curve, strict=True)}


def _group(dsr: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
    n = len(dsr)
    n_valid = int(valid.sum())
    curve = correctness(np.where(valid, dsr, np.nan))
    return {
        "n": n,
        "n_valid": n_valid,
        "validness": n_valid / n if n else None,
        "correctness_at_0.7": _finite(curve[HEADLINE_KEY]),
        "mean_dsr": float(dsr[valid].mean()) if n_valid else None,
        "correctness": {k: _finite(v) for k, v in curve.items()},
    }


def build_summary(
    scores: pa.Table, dsr_types: Sequence[str], config: ScoringConfig
) -> dict[str, Any]:
    """The summary.json content for a scores table (``dsr_types`` aligned with its rows)."""
    dsr = scores.column("dsr").to_numpy()
    valid = scores.column("valid").to_numpy(zero_copy_only=False).astype(bool)
    reasons = scores.column("reason").to_pylist()
    overall = _group(dsr, valid)
    types = np.asarray(dsr_types, dtype=object)
    per_type = {}
    for t in sorted(set(dsr_types)):
        mask = types == t
        group = _group(dsr[mask], valid[mask])
        del group["correctness"]["0.0"]  # equals validness; keeps the file short
        per_type[t] = group
    counts = Counter(r for r in reasons if r)
    return {
        "n_videos": overall["n"],
        "n_valid": overall["n_valid"],
        "validness": overall["validness"],
        "correctness_at_0.7": overall["correctness_at_0.7"],
        "mean_dsr": overall["mean_dsr"],
        "correctness": overall["correctness"],
        "thresholds": THRESHOLDS,
        "threshold_note": (
            "official grid numpy.arange(0, 1, 0.1); key '0.7' is the float "
            "0.7000000000000001, so DSR == 0.7 exactly does not count"
        ),
        "counts": {
            "videos": overall["n"],
            "valid": overall["n_valid"],
            "invalid": overall["n"] - overall["n_valid"],
            "reasons": dict(sorted(counts.items())),
        },
        "per_type": per_type,
        "config": config.to_dict(),
    }


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def format_summary(summary: dict[str, Any]) -> str:
    """A compact text table: validness, Correctness@0.7 and mean DSR, overall and per type."""

    def pct(x: float | None) -> str:
        return "   -  " if x is None else f"{100 * x:5.1f}%"

    def num(x: float | None) -> str:
        return "  -  " if x is None else f"{x:.3f}"

    lines = [f"{'type':<8}{'videos':>7}{'valid':>8}{'validness':>11}{'C@0.7':>9}{'mean DSR':>10}"]
    rows = [(t, g) for t, g in summary["per_type"].items()]
    rows.append(
        (
            "all",
            {
                "n": summary["n_videos"],
                "n_valid": summary["n_valid"],
                "validness": summary["validness"],
                "correctness_at_0.7": summary["correctness_at_0.7"],
                "mean_dsr": summary["mean_dsr"],
            },
        )
    )
    for i, (name, g) in enumerate(rows):
        if i == len(rows) - 1:
            lines.append("-" * len(lines[0]))
        lines.append(
            f"{name:<8}{g['n']:>7}{g['n_valid']:>8}{pct(g['validness']):>11}"
            f"{pct(g['correctness_at_0.7']):>9}{num(g['mean_dsr']):>10}"
        )
    reasons = summary["counts"]["reasons"]
    if reasons:
        lines.append("invalid: " + ", ".join(f"{r} {n}" for r, n in reasons.items()))
    curve = summary["correctness"]
    lines.append(
        "Correctness@tau: "
        + " ".join(f"{k}:{'-' if v is None else f'{v:.3f}'}" for k, v in curve.items())
    )
    return "\n".join(lines)


def one_line(summary: dict[str, Any]) -> str:
    """The one-line summary a CLI verb ends with."""
    c = summary["correctness_at_0.7"]
    v = summary["validness"]
    return (
        f"scored {summary['n_videos']} videos: {summary['n_valid']} valid "
        f"({100 * v:.1f}%), Correctness@0.7 = {'-' if c is None else f'{c:.3f}'}"
    )
