"""``pairs`` on a run directory: ``scores.parquet`` (+ prompts) -> ``pairs.parquet``.

The file records what it was made from (the pairing settings and the fingerprint of the
scores it read), so ``train`` can tell pairs built from older scores. ``pairs`` itself
refuses scores older than the run's tracks or manifest (:func:`stale_scores`): scores
record what they were made from, and pairing from them after ``track`` redid videos would
train on the old videos' verdicts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pyarrow as pa

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import write_parquet
from spatialalign.core.provenance import (
    MISSING,
    fingerprint,
    record_of,
    tracks_changed,
    tracks_inputs,
    with_record,
)
from spatialalign.core.schemas import PAIRS
from spatialalign.pairs.build import Pair, PairConfig, PairReport, ScoredSample, build_pairs
from spatialalign.rundir.layout import RunDir

PAIRS_TABLE = pa.schema(
    [*PAIRS, pa.field("dsr_winner", pa.float64()), pa.field("dsr_loser", pa.float64())]
)
"""pairs.parquet: the DESIGN.md columns plus both samples' DSR (for sft/rwr weighting)."""


def scored_samples(scores: pa.Table) -> list[ScoredSample]:
    """The rows of a validated scores table as :class:`ScoredSample` (NaN DSR = invalid)."""
    rows = scores.select(["sample_id", "prompt_id", "valid", "dsr"]).to_pylist()
    return [
        ScoredSample(
            r["sample_id"],
            r["prompt_id"],
            bool(r["valid"]) and r["dsr"] is not None and not math.isnan(r["dsr"]),
            math.nan if r["dsr"] is None else float(r["dsr"]),
        )
        for r in rows
    ]


def pairs_table(pairs: list[Pair]) -> pa.Table:
    """The Arrow table of ``pairs`` in the pairs.parquet schema."""
    columns = {
        "prompt_id": [p.prompt_id for p in pairs],
        "winner": [p.winner for p in pairs],
        "loser": [p.loser for p in pairs],
        "dsr_winner": [p.dsr_winner for p in pairs],
        "dsr_loser": [p.dsr_loser for p in pairs],
    }
    return pa.Table.from_pydict(columns, schema=PAIRS_TABLE)


def stale_scores(run: RunDir, scores: pa.Table) -> str | None:
    """Why ``scores`` (the run's scores.parquet) are older than what they were made from,
    as the one-line error; None when they are current or cannot be judged (a scores file
    with no record of its inputs: written by hand, or by an older version)."""
    made = (record_of(run.scores_path) or {}).get("inputs")
    if not isinstance(made, dict):
        return None
    now = tracks_inputs(run.tracks_path, run.detections_path)
    root = str(run.root)
    # the manifest against the tracks and the scores: videos new, gone, re-prompted or
    # with other content than what was tracked need `track` before `score-batch`
    if run.manifest_path.is_file():
        listed = dict(
            zip(
                *run.read_manifest(["prompt_id"], resolve_paths=False)
                .select(["sample_id", "prompt_id"])
                .to_pydict()
                .values(),
                strict=True,
            )
        )
        scored = dict(
            zip(*scores.select(["sample_id", "prompt_id"]).to_pydict().values(), strict=True)
        )
        made_of = {sid: r.get("fingerprint") for sid, r in run.sample_records().items()}
        tracked = now["videos"]
        behind = {sid for sid in set(listed) ^ set(scored)}
        behind |= {sid for sid, pid in listed.items() if sid in scored and scored[sid] != pid}
        behind |= {
            sid
            for sid in listed
            if made_of.get(sid)
            and tracked.get(sid) not in (None, MISSING)
            and made_of[sid] != tracked[sid]
        }
        if tracked:
            behind |= {sid for sid in listed if sid not in tracked}
        if behind:
            return (
                f"scores.parquet is older than samples/manifest.parquet for {len(behind)} "
                f"video(s) (new, removed or changed since they were tracked and scored): run "
                f"`spatialalign track {root}` and `spatialalign score-batch {root}` first"
            )
    if not run.tracks_path.is_file():
        return None
    changed = tracks_changed(made, now)
    if changed is None:
        return None
    which = f" for {changed} video(s)" if changed else ""
    return (
        f"scores.parquet is older than tracks.parquet{which}: run "
        f"`spatialalign score-batch {root}` first"
    )


def pair_run(run_dir: str | os.PathLike[str], cfg: PairConfig) -> tuple[Path, PairReport]:
    """Builds ``RUN_DIR/pairs.parquet`` from the run's scores; returns its path and report."""
    run = RunDir(run_dir).require()
    if not run.scores_path.is_file():
        raise SpatialAlignError(
            f"no scores in {run.root} (run `spatialalign score-batch {run.root}` first)"
        )
    scores = run.read_scores()
    stale = stale_scores(run, scores)
    if stale is not None:
        raise SpatialAlignError(stale)
    animal_of = None
    if cfg.animals is not None:
        prompts = run.read_prompts()
        animal_of = {p.prompt_id: p.animal for p in prompts}
        unknown = sorted(set(cfg.animals) - set(animal_of.values()))
        if unknown:
            raise SpatialAlignError(
                f"no prompt of {run.prompts_path} has animal(s) {', '.join(unknown)}"
            )
    pairs, report = build_pairs(scored_samples(scores), cfg, animal_of)
    record = {
        "stage": "pairs",
        "settings": cfg.to_dict(),
        "scores": fingerprint(run.scores_path),
    }
    path = write_parquet(with_record(pairs_table(pairs), record), run.pairs_path)
    return path, report
