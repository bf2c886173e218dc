"""The paper-style comparison of several scored runs, with bootstrap intervals over prompts.

Each run is a ``scores.parquet``-shaped table (sample_id, prompt_id, seed, valid, dsr;
extra numeric columns are metrics, e.g. ID consistency joined from
``metrics.parquet``). Per run: Correctness@0.7 on the official grid (the same
:func:`spatialalign.scoring.summary.correctness` that ``score-batch`` uses, so
``dsr == 0.7`` exactly does not count), validness, and the mean of every extra metric
(NaN ignored). The first run is the baseline; every other run gets its difference from
it on the prompts both share.

**Intervals.** Videos of one prompt are not independent (same text, 5 seeds), so the
bootstrap resamples *prompts*: a replicate draws ``P`` prompt indices uniformly with
replacement (``numpy.random.default_rng(seed).integers(0, P, size=(n_boot, P))``, one row
per replicate) and recomputes the pooled ratio ``sum(hits of the drawn prompts) /
sum(videos of the drawn prompts)``, a prompt drawn twice counting twice. The interval
is the percentile one: the ``(1-c)/2`` and ``(1+c)/2`` quantiles of the replicates
(``numpy.quantile``, linear). Differences use a *paired* bootstrap: the same draws of
shared prompts for both runs, the replicate being ``C_run - C_base``.

Prompts are matched by id; ``compare`` and ``report`` first refuse runs whose shared ids
have other prompt texts (:func:`spatialalign.evaluation.run_tables.refuse_other_texts`)
and say how many prompts and videos each difference rests on (:meth:`Comparison.rests_on`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path
from spatialalign.evaluation.breakdown import RunBreakdown, breakdown_markdown, run_breakdown
from spatialalign.scoring.summary import HEADLINE_INDEX, HEADLINE_KEY, THRESHOLDS, correctness

# scores.parquet columns that are not metrics to average
SCORE_COLUMNS = frozenset(
    {"sample_id", "prompt_id", "seed", "valid", "reason", "dsr", "n_kept"}
    | {"r_init", "r_final", "g_init", "g_final"}
)


@dataclass(frozen=True)
class CompareConfig:
    """How the comparison is computed (``compare`` and ``report`` derive their options)."""

    n_boot: int = field(default=2000, metadata={"help": "Bootstrap replicates."})
    confidence: float = field(default=0.95, metadata={"help": "Interval coverage."})
    seed: int = field(
        default=0, metadata={"help": "Bootstrap seed (the same prompt draws for every run)."}
    )

    def __post_init__(self) -> None:
        if not 1 <= self.n_boot <= 1_000_000:
            raise SpatialAlignError(f"--n-boot must be in [1, 1000000], got {self.n_boot}")
        if not 0.0 < self.confidence < 1.0:
            raise SpatialAlignError(f"--confidence must be in (0, 1), got {self.confidence}")


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap percentile interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class RunSummary:
    """One row of the comparison table."""

    name: str
    n_videos: int
    n_prompts: int
    validness: Interval
    correctness: Interval  # Correctness@0.7
    metrics: dict[str, float]
    curve: dict[str, float]  # Correctness@tau on the official grid


@dataclass(frozen=True)
class Difference:
    """``run - baseline`` on the prompts both runs have, with a paired interval."""

    name: str
    n_shared_prompts: int
    correctness: Interval
    validness: Interval
    n_base_videos: int = 0
    """Videos of the baseline on the shared prompts."""
    n_videos: int = 0
    """Videos of this run on the shared prompts."""


@dataclass(frozen=True)
class Comparison:
    """Everything :func:`compare_runs` computed."""

    runs: list[RunSummary]
    differences: list[Difference]
    config: CompareConfig
    metric_names: list[str] = field(default_factory=list)
    breakdowns: list[RunBreakdown] = field(default_factory=list)
    """Per run: figures per DSR type and invalid videos per rejection reason."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN -> None)."""
        return _jsonable(
            {
                "baseline": self.runs[0].name if self.runs else None,
                "headline": f"correctness@{HEADLINE_KEY}",
                "threshold": THRESHOLDS[HEADLINE_INDEX],
                "runs": [asdict(r) for r in self.runs],
                "differences": [asdict(d) for d in self.differences],
                "metrics": self.metric_names,
                "config": asdict(self.config),
                "breakdown": [asdict(b) for b in self.breakdowns],
            }
        )

    def rests_on(self) -> list[str]:
        """One line per difference: how many prompts (and videos) it rests on."""
        if not self.runs:
            return []
        base = self.runs[0].name
        return [
            f"{d.name!r} vs {base!r} rests on {d.n_shared_prompts} shared prompt(s): "
            f"{d.n_base_videos} video(s) of {base!r}, {d.n_videos} of {d.name!r}"
            for d in self.differences
        ]

    def to_markdown(self) -> str:
        """One table row per run: videos, validness, Correct@0.7 [CI], Δ vs base, metrics
        (a metric no run has a value for, e.g. DINOv2 without ``--dinov2``, is left out)."""
        pct = round(100 * self.config.confidence)
        head = ["run", "videos", "prompts", "validness", f"Correct@0.7 [{pct}% CI]"]
        head += [f"Δ vs {self.runs[0].name} [{pct}% CI]" if self.runs else "Δ"]
        metrics = [
            m
            for m in self.metric_names
            if any(_finite(r.metrics.get(m, math.nan)) for r in self.runs)
        ]
        head += metrics
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        diffs = {d.name: d for d in self.differences}
        for i, r in enumerate(self.runs):
            d = diffs.get(r.name) if i else None
            cells = [
                r.name,
                str(r.n_videos),
                str(r.n_prompts),
                _num(r.validness.value),
                _interval(r.correctness),
                "—" if d is None else _interval(d.correctness, signed=True),
            ]
            cells += [_num(r.metrics.get(m, math.nan)) for m in metrics]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def breakdown_markdown(self) -> str:
        """Correct@0.7 (validness) per DSR type and invalid videos per rejection reason, a
        column per run (:func:`~spatialalign.evaluation.breakdown.breakdown_markdown`)."""
        return breakdown_markdown(self.breakdowns)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _num(x: float, signed: bool = False) -> str:
    if not _finite(x):
        return "-"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _interval(iv: Interval, signed: bool = False) -> str:
    return f"{_num(iv.value, signed)} [{_num(iv.low, signed)}, {_num(iv.high, signed)}]"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ------------------------------------------------------------------------ per prompt


@dataclass(frozen=True)
class PromptCounts:
    """Per-prompt video, valid and Correct@0.7 counts of one run (prompts sorted)."""

    prompt_ids: np.ndarray  # object array of str
    videos: np.ndarray
    valid: np.ndarray
    hits: np.ndarray


def prompt_counts(scores: pa.Table) -> PromptCounts:
    """Counts per prompt; a hit is a valid video with DSR >= the grid's 0.7 float."""
    for col in ("prompt_id", "valid", "dsr"):
        if col not in scores.column_names:
            raise ValueError(f"scores table has no {col!r} column")
    prompts = np.asarray(scores.column("prompt_id").to_pylist(), dtype=object)
    valid = scores.column("valid").to_numpy(zero_copy_only=False).astype(bool)
    dsr = scores.column("dsr").to_numpy(zero_copy_only=False).astype(np.float64)
    hit = valid & (np.nan_to_num(dsr, nan=-np.inf) >= THRESHOLDS[HEADLINE_INDEX])
    ids, inverse = np.unique(prompts.astype(str), return_inverse=True)
    n = len(ids)
    return PromptCounts(
        prompt_ids=ids.astype(object),
        videos=np.bincount(inverse, minlength=n).astype(np.float64),
        valid=np.bincount(inverse, weights=valid, minlength=n),
        hits=np.bincount(inverse, weights=hit, minlength=n),
    )


def resample_weights(n_prompts: int, config: CompareConfig) -> np.ndarray:
    """``[n_boot, n_prompts]`` multiplicities of each prompt in each bootstrap replicate."""
    rng = np.random.default_rng(config.seed)
    draws = rng.integers(0, n_prompts, size=(config.n_boot, n_prompts))
    weights = np.zeros((config.n_boot, n_prompts))
    np.add.at(weights, (np.arange(config.n_boot)[:, None], draws), 1.0)
    return weights


def _ratio_replicates(weights: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return (weights @ num) / (weights @ den)


def _interval_of(value: float, replicates: np.ndarray, confidence: float) -> Interval:
    lo, hi = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(float(value), float(lo), float(hi))


# ----------------------------------------------------------------------------- compare


def _metric_names(runs: Sequence[tuple[str, pa.Table]], metrics: Sequence[str] | None) -> list[str]:
    if metrics is not None:
        return list(metrics)
    names: list[str] = []
    for _, table in runs:
        for f in table.schema:
            numeric = pa.types.is_floating(f.type) or pa.types.is_integer(f.type)
            if numeric and f.name not in SCORE_COLUMNS and f.name not in names:
                names.append(f.name)
    return names


def summarise_run(
    name: str, scores: pa.Table, metrics: Sequence[str], config: CompareConfig
) -> RunSummary:
    """Correctness@0.7 and validness with prompt-bootstrap intervals, metric means, curve."""
    counts = prompt_counts(scores)
    valid = scores.column("valid").to_numpy(zero_copy_only=False).astype(bool)
    dsr = scores.column("dsr").to_numpy(zero_copy_only=False).astype(np.float64)
    curve = correctness(np.where(valid, dsr, np.nan))
    n = scores.num_rows
    if n:
        weights = resample_weights(len(counts.prompt_ids), config)
        c_reps = _ratio_replicates(weights, counts.hits, counts.videos)
        v_reps = _ratio_replicates(weights, counts.valid, counts.videos)
        c = _interval_of(curve[HEADLINE_KEY], c_reps, config.confidence)
        v = _interval_of(counts.valid.sum() / n, v_reps, config.confidence)
    else:
        c = v = Interval(math.nan, math.nan, math.nan)
    means = {}
    for m in metrics:
        if m in scores.column_names:
            x = scores.column(m).to_numpy(zero_copy_only=False).astype(np.float64)
            means[m] = float(np.nanmean(x)) if np.isfinite(x).any() else math.nan
    return RunSummary(name, n, len(counts.prompt_ids), v, c, means, curve)


def paired_difference(
    name: str, base: pa.Table, run: pa.Table, config: CompareConfig
) -> Difference:
    """``run - base`` Correctness@0.7 and validness on shared prompts, paired bootstrap."""
    a, b = prompt_counts(base), prompt_counts(run)
    shared, ia, ib = np.intersect1d(
        a.prompt_ids.astype(str), b.prompt_ids.astype(str), return_indices=True
    )
    if len(shared) == 0:
        nan = Interval(math.nan, math.nan, math.nan)
        return Difference(name, 0, nan, nan)
    weights = resample_weights(len(shared), config)
    out = []
    for num in ("hits", "valid"):
        na, nb = getattr(a, num)[ia], getattr(b, num)[ib]
        da, db = a.videos[ia], b.videos[ib]
        value = nb.sum() / db.sum() - na.sum() / da.sum()
        reps = _ratio_replicates(weights, nb, db) - _ratio_replicates(weights, na, da)
        out.append(_interval_of(value, reps, config.confidence))
    return Difference(
        name, len(shared), out[0], out[1], int(a.videos[ia].sum()), int(b.videos[ib].sum())
    )


def compare_runs(
    runs: Sequence[tuple[str, pa.Table]],
    *,
    metrics: Sequence[str] | None = None,
    config: CompareConfig | None = None,
    dsr_types: Sequence[Mapping[str, str] | None] | None = None,
) -> Comparison:
    """Compares named score tables; the first is the baseline.

    ``metrics`` lists the extra columns to average (default: every numeric column that
    is not a scores.parquet column). ``dsr_types``: per run, its prompt ids' DSR types (for
    the per-type breakdown; None: none).
    """
    config = config or CompareConfig()
    if not runs:
        raise ValueError("nothing to compare: no runs")
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    metric_names = _metric_names(runs, metrics)
    summaries = [summarise_run(n, t, metric_names, config) for n, t in runs]
    base_name, base = runs[0]
    diffs = [paired_difference(n, base, t, config) for n, t in runs[1:]]
    types = list(dsr_types) if dsr_types is not None else [None] * len(runs)
    if len(types) != len(runs):
        raise ValueError(f"dsr_types has {len(types)} entries for {len(runs)} runs")
    breakdowns = [run_breakdown(n, t, ty) for (n, t), ty in zip(runs, types, strict=True)]
    return Comparison(summaries, diffs, config, metric_names, breakdowns)


def curves_png(comparison: Comparison, path: str | os.PathLike[str]) -> Path:
    """Overlaid Correctness@tau curves of every run (official grid), written atomically."""
    from matplotlib.figure import Figure

    from spatialalign.scoring.plots import png_bytes

    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for r in comparison.runs:
        values = [r.curve[f"{t:.1f}"] for t in THRESHOLDS]
        label = f"{r.name} (C@0.7 {_num(r.correctness.value)})"
        ax.plot(THRESHOLDS, values, marker="o", linewidth=1.5, label=label)
    ax.axvline(THRESHOLDS[HEADLINE_INDEX], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("τ (DSR threshold)")
    ax.set_ylabel("Correctness@τ")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    data = png_bytes(fig)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)
