"""Batch DSR scoring of a run directory: tracks + manifest + prompts -> scores.

Reads ``samples/manifest.parquet`` (sample -> prompt), the prompts, ``tracks.parquet``
(long format, one row per sample, frame and label; an absent row means "not
detected") and, when present, ``detections.parquet`` (detection-level rejections).
The tracks are turned into one dense ``[T, 4]`` animal array and one object array
(frames of a sample in time order, NaN rows where a label is missing) by
:func:`spatialalign.rundir.tracks.read_tracks` (Rust over the Arrow columns), and
scored by a single :func:`dsr_geom.dsr_batch` call: 1.8 M tracks rows take about
twice as long as reading the file (``scripts/bench_score_batch.py``).

Every manifest sample gets one row in ``scores.parquet``. Its ``reason`` is

* the detection stage's reason when ``detections.parquet`` rejects it (a row whose
  ``status`` is not ``valid``/``ok``/``accepted``; with a null status, a non-empty
  ``reason``),
* ``no_tracks`` when it has neither tracks nor a detections row,
* ``too_few_frames`` when fewer than ``min_frames`` frames are kept,
* ``""`` when the sample is valid.

Invalid samples keep NaN scores and count in the Correctness denominator. Samples
with neither tracks nor a detections row were not tracked yet: scoring says how many
(a warning) rather than silently counting them invalid.

Which thresholds: ``track`` records its preset in ``detections.parquet`` /
``tracks.parquet`` (:func:`recorded_preset`); ``score-batch`` uses that one by default
and warns when told another. ``scores.parquet`` records the preset and the numbers used,
and what it was made from (:func:`~spatialalign.core.provenance.tracks_inputs`: both tables'
fingerprints, the track settings and each video's fingerprint), which ``pairs`` checks.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dsr_geom
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path, read_parquet, write_json, write_parquet
from spatialalign.core.ids import refuse_duplicates
from spatialalign.core.presets import OFFICIAL, ScoringConfig
from spatialalign.core.provenance import record_of, tracks_inputs, with_record
from spatialalign.core.schemas import SCORES, validate_table
from spatialalign.rundir.layout import RunDir
from spatialalign.rundir.tracks import Tracks, densify, read_tracks_table

ACCEPTED_STATUSES = frozenset({"valid", "ok", "accepted"})


@dataclass(frozen=True)
class PromptInfo:
    """What scoring needs from a prompt: its relation letters."""

    prompt_id: str
    initial: str
    final: str

    @property
    def dsr_type(self) -> str:
        return self.initial + self.final


@dataclass
class ScoreResult:
    """Everything :func:`score_run` computed and where it wrote it."""

    scores: pa.Table
    summary: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_videos(self) -> int:
        return self.scores.num_rows

    @property
    def n_valid(self) -> int:
        return int(pc.sum(self.scores.column("valid")).as_py() or 0)


# ---------------------------------------------------------------------------- inputs


def read_prompt_infos(
    run: RunDir, path: str | os.PathLike[str] | None = None
) -> dict[str, PromptInfo]:
    """prompt_id -> relation letters of the run's prompts (``path`` overrides the file)."""
    try:
        prompts = run.read_prompts(path)
    except SpatialAlignError:
        raise
    except (ValueError, OSError, pa.ArrowException) as e:
        raise SpatialAlignError(f"cannot read prompts {path or run.prompts_path}: {e}") from e
    return {p.prompt_id: PromptInfo(p.prompt_id, p.initial, p.final) for p in prompts}


def recorded_preset(run_dir: str | os.PathLike[str]) -> str | None:
    """The scoring preset ``track`` recorded for this run (None when it recorded none)."""
    run = RunDir(run_dir)
    for path in (run.detections_path, run.tracks_path):
        if path.is_file():
            preset = (record_of(path) or {}).get("preset")
            if isinstance(preset, str) and preset:
                return preset
    return None


def read_rejections(path: str | os.PathLike[str], sample_ids: pa.Array) -> tuple[np.ndarray, list]:
    """From ``detections.parquet``: (has_row[V] bool, reason[V] with None when accepted)."""
    table = read_parquet(path, "detections")
    table = validate_table(table, "detections", path, columns=["sample_id", "status", "reason"])
    refuse_duplicates(table.column("sample_id").to_pylist(), str(path), "sample_id")
    idx = pc.index_in(table.column("sample_id"), value_set=sample_ids).fill_null(-1).to_numpy()
    status = pc.utf8_lower(pc.utf8_trim_whitespace(table.column("status")))
    reason = pc.utf8_trim_whitespace(table.column("reason")).fill_null("")
    accepted = pc.if_else(
        pc.is_null(status),
        pc.equal(reason, ""),
        pc.is_in(status, value_set=pa.array(sorted(ACCEPTED_STATUSES))),
    ).to_numpy(zero_copy_only=False)
    label = pc.if_else(pc.equal(reason, ""), status.fill_null("rejected"), reason).to_pylist()

    n = len(sample_ids)
    has_row = np.zeros(n, dtype=bool)
    reasons: list[str | None] = [None] * n
    for j in np.flatnonzero(idx >= 0):  # one entry per detections row, not per frame
        i = int(idx[j])
        has_row[i] = True
        if not accepted[j]:
            reasons[i] = label[j]
    return has_row, reasons


# ---------------------------------------------------------------------------- scoring


@dataclass
class LoadedRun:
    """A run directory's scoring inputs, validated and aligned on the manifest order."""

    manifest: pa.Table
    prompts: dict[str, PromptInfo]
    initial: list[str]
    final: list[str]
    tracks: Tracks
    has_detection_row: np.ndarray
    rejection: list[str | None]
    warnings: list[str]


def load_run(
    run_dir: str | os.PathLike[str],
    *,
    prompts_path: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> LoadedRun:
    """Reads and checks every scoring input of ``run_dir``; writes nothing."""
    run = RunDir(run_dir).require()
    # Arrow reads the tracks (GIL released) while Python checks the manifest and prompts;
    # an error of theirs comes first, as if read one after the other
    with ThreadPoolExecutor(1, thread_name_prefix="read-tracks") as pool:
        table = pool.submit(read_tracks_table, run.tracks_path, progress=progress)
        manifest = run.read_manifest(["prompt_id", "seed"])
        if manifest.num_rows == 0:
            raise SpatialAlignError(f"{run.manifest_path}: the manifest lists no samples")
        prompts = read_prompt_infos(run, prompts_path)
        prompt_ids = manifest.column("prompt_id").to_pylist()
        unknown = sorted({p for p in prompt_ids if p not in prompts})
        if unknown:
            shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
            raise SpatialAlignError(
                f"{len(unknown)} prompt_id(s) of the manifest are not in the prompts: {shown}"
            )
        sample_ids = manifest.column("sample_id").combine_chunks()
        tracks = densify(run.tracks_path, table.result(), sample_ids)
    det_path = run.detections_path
    if det_path.exists():
        has_row, rejection = read_rejections(det_path, sample_ids)
    else:
        has_row, rejection = np.zeros(len(sample_ids), dtype=bool), [None] * len(sample_ids)
    warnings = []
    if tracks.n_unknown_rows:
        warnings.append(
            f"ignored {tracks.n_unknown_rows} tracks row(s) of samples not in the manifest"
        )
    stale = _changed_since_tracked(run)
    if stale:
        warnings.append(
            f"{stale} sample(s) have other video content than when they were tracked "
            "(rerun `spatialalign track`); their scores are the old videos'"
        )
    untracked = int(((tracks.n_rows == 0) & ~has_row).sum())
    if untracked:
        warnings.append(
            f"{untracked} of {len(sample_ids)} sample(s) have neither tracks nor a detections "
            "row (not tracked yet? run `spatialalign track`); they are scored invalid (no_tracks)"
        )
    return LoadedRun(
        manifest=manifest,
        prompts=prompts,
        initial=[prompts[p].initial for p in prompt_ids],
        final=[prompts[p].final for p in prompt_ids],
        tracks=tracks,
        has_detection_row=has_row,
        rejection=rejection,
        warnings=warnings,
    )


def _changed_since_tracked(run: RunDir) -> int:
    """Samples whose video fingerprint in the manifest differs from the one ``track``
    recorded (both stages record them; 0 when either record is absent)."""
    if not run.detections_path.is_file():
        return 0
    made = run.sample_records()
    tracked = (record_of(run.detections_path) or {}).get("videos") or {}
    return sum(
        1
        for sid, fp in tracked.items()
        if fp and made.get(sid, {}).get("fingerprint") not in (None, fp)
    )


def score_loaded(run: LoadedRun, config: ScoringConfig = OFFICIAL) -> pa.Table:
    """Scores every manifest sample with one :func:`dsr_geom.dsr_batch` call."""
    t = run.tracks
    out = dsr_geom.dsr_batch(
        t.animal, t.obj, t.offsets, run.initial, run.final, m=config.m, min_frames=config.min_frames
    )
    n = run.manifest.num_rows
    scored = ~np.isnan(out["dsr"])
    reasons = np.full(n, "", dtype=object)
    reasons[~scored] = "too_few_frames"
    reasons[(t.n_rows == 0) & ~run.has_detection_row] = "no_tracks"
    rejected = np.array([r is not None for r in run.rejection], dtype=bool)
    if rejected.any():
        reasons[rejected] = [r for r in run.rejection if r is not None]
    valid = scored & ~rejected
    columns: dict[str, Any] = {
        "sample_id": run.manifest.column("sample_id"),
        "prompt_id": run.manifest.column("prompt_id"),
        "seed": run.manifest.column("seed"),
        "valid": pa.array(valid),
        "reason": pa.array(reasons.tolist(), pa.string()),
    }
    for name in ("dsr", "r_init", "r_final", "g_init", "g_final"):
        columns[name] = pa.array(np.where(valid, out[name], np.nan))
    columns["n_kept"] = pa.array(out["n_kept"].astype(np.int64))
    return pa.table(columns, schema=SCORES)


def score_run(
    run_dir: str | os.PathLike[str],
    *,
    prompts_path: str | os.PathLike[str] | None = None,
    config: ScoringConfig = OFFICIAL,
    preset: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    plots: bool = False,
    progress: bool | None = None,
) -> ScoreResult:
    """Scores a run directory and writes scores.parquet, summary.json and correctness.png.

    Everything is read, checked, scored and rendered in memory before the first
    output is written (each write atomic), so bad input leaves no outputs behind.
    ``out_dir`` defaults to ``run_dir``; ``plots`` adds per-video SSR curves under
    ``out_dir/plots/``. ``preset`` names ``config``'s preset, recorded in scores.parquet
    with the numbers themselves.
    """
    from spatialalign.scoring.plots import correctness_figure_png, write_ssr_plots
    from spatialalign.scoring.summary import build_summary

    # what the scores are made from, taken before reading: tracks rewritten while this
    # runs make the record older than the tables, so ``pairs`` refuses rather than trusts it
    src = RunDir(run_dir)
    inputs = tracks_inputs(src.tracks_path, src.detections_path)
    run = load_run(run_dir, prompts_path=prompts_path, progress=progress)
    scores = score_loaded(run, config)
    dsr_types = [i + f for i, f in zip(run.initial, run.final, strict=True)]
    summary = build_summary(scores, dsr_types, config)
    png = correctness_figure_png(summary)

    out = RunDir(out_dir if out_dir is not None else run_dir)
    record = {
        "stage": "score-batch",
        "preset": preset,
        "config": config.to_dict(),
        "track_preset": recorded_preset(run_dir),
        "inputs": inputs,
    }
    paths = {
        "scores": write_parquet(with_record(scores, record), out.scores_path),
        "summary": write_json(summary, out.summary_path),
        "correctness": _write_bytes(png, out.correctness_path),
    }
    if plots:
        paths["plots"] = write_ssr_plots(out, run, scores, config, progress=progress)
    return ScoreResult(scores=scores, summary=summary, paths=paths, warnings=run.warnings)


def _write_bytes(data: bytes, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
