"""What ``compare`` and ``report`` read from a run directory and write for a comparison.

A run's comparison table is its ``scores.parquet`` with the numeric columns of
``metrics.parquet`` (when present) joined on ``sample_id``; the comparison's files are
``comparison.md``, ``comparison.json`` and ``correctness_curves.png``. Runs are compared
only when their shared prompt ids have the same texts (:func:`refuse_other_texts`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path, read_parquet, write_json
from spatialalign.core.ids import refuse_duplicates
from spatialalign.evaluation.compare import Comparison, curves_png
from spatialalign.rundir.layout import RunDir


def read_run_table(run_dir: str | os.PathLike[str]) -> pa.Table:
    """``scores.parquet`` left-joined with ``metrics.parquet``'s numeric columns on sample_id.

    Raises :class:`SpatialAlignError` (one line) on a missing directory or scores file,
    an invalid table, or duplicate sample ids in the metrics.
    """
    run = RunDir(run_dir).require()
    if not run.scores_path.is_file():
        raise SpatialAlignError(
            f"{run.root}: no scores.parquet (run `spatialalign score-batch {run.root}` first)"
        )
    scores = run.read_scores()
    path = run.metrics_path  # written by `eval` (evaluation.metrics_file.write_metrics)
    if not path.is_file():
        return scores
    metrics = read_parquet(path, "metrics")
    if "sample_id" not in metrics.column_names:
        raise SpatialAlignError(f"{path}: not a metrics table: no 'sample_id' column")
    refuse_duplicates(metrics.column("sample_id").to_pylist(), str(path), "sample_id")
    keep = [
        f.name
        for f in metrics.schema
        if f.name not in scores.column_names
        and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
    ]
    if not keep:
        return scores
    extra = metrics.select(["sample_id", *keep])
    extra = extra.cast(pa.schema([("sample_id", pa.string())] + [(k, pa.float64()) for k in keep]))
    row = "__scores_row"  # the join does not keep row order; this restores the scores' order
    numbered = scores.append_column(row, pa.array(range(scores.num_rows), pa.int64()))
    joined = numbered.join(extra, keys="sample_id", join_type="left outer").sort_by(row)
    return joined.select(scores.column_names + keep)


def read_prompt_texts(run_dir: str | os.PathLike[str]) -> dict[str, str] | None:
    """prompt_id -> prompt text of the run's prompts.parquet (None when it has none)."""
    run = RunDir(run_dir)
    if not run.prompts_path.is_file():
        return None
    return {p.prompt_id: p.text for p in run.read_prompts()}


def read_prompt_types(run_dir: str | os.PathLike[str]) -> dict[str, str] | None:
    """prompt_id -> DSR type of the run's prompts.parquet (None when it has none)."""
    run = RunDir(run_dir)
    if not run.prompts_path.is_file():
        return None
    return {p.prompt_id: p.dsr_type for p in run.read_prompts()}


def _same_text(text: str) -> str:
    return " ".join(text.split())


def _quote(text: str, most: int = 60) -> str:
    return repr(text if len(text) <= most else text[: most - 3] + "...")


def refuse_other_texts(
    runs: Sequence[tuple[str, pa.Table, Mapping[str, str] | None]],
) -> list[str]:
    """Refuses (one line) a run whose scored prompt ids are the baseline's (the first run)
    with other prompt texts: the comparison matches prompts by id, so it would compare
    other prompts as one. Texts are compared with whitespace collapsed. Returns warnings
    for runs with no prompts file (matched by id only)."""
    warnings = [
        f"{name}: no prompts.parquet: its prompts are matched by id only, not by text"
        for name, _, texts in runs
        if texts is None
    ]
    if not runs or runs[0][2] is None:
        return warnings
    base_name, base_table, base_texts = runs[0]
    base_ids = set(base_table.column("prompt_id").to_pylist())
    for name, table, texts in runs[1:]:
        if texts is None:
            continue
        shared = base_ids & set(table.column("prompt_id").to_pylist())
        other = sorted(
            pid
            for pid in shared
            if pid in base_texts
            and pid in texts
            and _same_text(base_texts[pid]) != _same_text(texts[pid])
        )
        if other:
            pid = other[0]
            raise SpatialAlignError(
                f"{len(other)} prompt id(s) have other texts in {name!r} than in "
                f"{base_name!r}, e.g. {pid!r}: {_quote(base_texts[pid])} vs "
                f"{_quote(texts[pid])} (prompts are compared by id: score both runs with "
                "the same prompts)"
            )
    return warnings


def run_names(run_dirs: Sequence[str | os.PathLike[str]], names: str | None = None) -> list[str]:
    """Display names: ``names`` split on commas, else each directory's name (its path as
    given where two directories share a name)."""
    if names is not None:
        given = [n.strip() for n in names.split(",")]
        if len(given) != len(run_dirs) or not all(given):
            raise SpatialAlignError(
                f"--names has {len(given)} non-empty name(s) for {len(run_dirs)} run(s): {names!r}"
            )
        if len(set(given)) != len(given):
            raise SpatialAlignError(f"--names must be unique, got {names!r}")
        return given
    paths = [Path(p) for p in run_dirs]
    base = [p.resolve().name or str(p) for p in paths]
    out = [b if base.count(b) == 1 else str(p) for b, p in zip(base, paths, strict=True)]
    if len(set(out)) != len(out):
        raise SpatialAlignError("the same run directory is given twice")
    return out


@dataclass(frozen=True)
class ComparisonFiles:
    """Where :func:`write_comparison` wrote the comparison."""

    markdown: Path
    json: Path
    curves: Path


def write_comparison(comparison: Comparison, out_dir: str | os.PathLike[str]) -> ComparisonFiles:
    """Writes ``comparison.md`` (the table, then the breakdown per DSR type and per rejection
    reason), ``comparison.json`` and ``correctness_curves.png``, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "comparison.md"
    text = comparison.to_markdown() + "\n\n" + comparison.breakdown_markdown() + "\n"
    with atomic_path(md) as tmp:
        tmp.write_text(text, encoding="utf-8")
    js = write_json(comparison.to_dict(), out / "comparison.json")
    png = curves_png(comparison, out / "correctness_curves.png")
    return ComparisonFiles(md, Path(js), png)
