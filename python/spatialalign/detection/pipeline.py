"""The ``track`` stage: videos of a run -> ``tracks.parquet`` + ``detections.parquet``.

For every manifest sample: decode the video (on a background thread, a few videos
ahead, so the detector never waits on decoding), detect the prompt's animal and
object on every frame, apply the official validity rules
(:mod:`~spatialalign.detection.validity`) and, for valid videos, track the two
classes (:mod:`~spatialalign.detection.tracker`). A video that cannot be decoded is
rejected with reason ``unreadable_video`` and the batch goes on.

Resumable and shardable: each sample's result is written as two small Parquet
parts under ``RUN_DIR/track_parts/<settings>/`` (tracks first, then the detections
row, which marks the sample done), atomically. The ``<settings>`` key is a hash of
the detector and thresholds, so results made with other settings are never reused.
The detections part records the content fingerprint of the video it was made from
(:class:`~spatialalign.core.provenance.StampedFingerprint`); a rerun skips a sample only
when its part exists and the video still has that content (hashed again, whatever its
size and mtime, when the manifest records other content than the part), and says how many
it redid and why (new sample, settings changed, video changed). A video that was
missing (a moved run directory) is retried once it is there again. Under
``torchrun`` / ``accelerate launch`` (``RANK`` / ``WORLD_SIZE``) rank r takes every
world_size-th sample; rank 0 merges all parts into the two final tables once they
all exist (or the next plain run does). The parts are kept as the resumable cache;
the final tables are derived from them, list the manifest's samples in manifest
order and record the settings, the preset and each video's fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_parquet, write_json, write_parquet
from spatialalign.core.presets import ScoringConfig
from spatialalign.core.provenance import StampedFingerprint, explain_change, record_of, with_record
from spatialalign.core.schemas import DETECTIONS, TRACKS, validate_table
from spatialalign.core.video import VideoReadError, read_video
from spatialalign.detection.base import Detector
from spatialalign.detection.tracker import TrackerConfig, track_video
from spatialalign.detection.validity import (
    REASON_UNREADABLE,
    VideoValidity,
    judge_detections,
    rejected,
)
from spatialalign.parallel.ranks import env_rank_world
from spatialalign.rundir.layout import RunDir


@dataclass
class TrackSummary:
    """What one ``track`` call did."""

    run_dir: Path
    n_samples: int
    """Samples in the manifest."""
    rank: int = 0
    world_size: int = 1
    n_mine: int = 0
    """Samples assigned to this process."""
    n_done_before: int = 0
    """Of those, already finished by an earlier run from the same video and settings."""
    n_tracked: int = 0
    """Tracked by this call."""
    reasons: Counter = field(default_factory=Counter)
    """Why this call tracked them: ``new`` or why an earlier result was redone."""
    counts: Counter = field(default_factory=Counter)
    """``valid`` / rejection reason -> videos tracked by this call."""
    run_counts: Counter = field(default_factory=Counter)
    """``valid`` / rejection reason -> videos over the merged tables (when merged)."""
    n_multi_instance: int = 0
    """Videos tracked now whose animal or object showed more than one instance."""
    merged: bool = False
    waiting_for: int = 0
    """Samples other ranks had not finished when the merge gave up waiting."""
    decode_wait_s: float = 0.0
    """Seconds the detector waited for a decoded video."""
    detect_s: float = 0.0
    """Seconds spent detecting and tracking."""
    fresh: dict[str, Fresh] = field(default_factory=dict, repr=False)
    """This call's results by sample id, as written to their parts: the merge takes them
    from here instead of reading the parts back (emptied once merged)."""

    @property
    def tracks_path(self) -> Path:
        return RunDir(self.run_dir).tracks_path

    @property
    def detections_path(self) -> Path:
        return RunDir(self.run_dir).detections_path

    def line(self) -> str:
        """The one-line summary: this call's work, then (when merged) the run's totals."""
        who = f"rank {self.rank}/{self.world_size}: " if self.world_size > 1 else ""
        why = ""
        if self.n_tracked:
            groups = sorted(self.reasons.items(), key=lambda kv: (kv[0] != "new", -kv[1]))
            why = (
                " ("
                + "; ".join(f"{n} new" if r == "new" else f"{n} redone: {r}" for r, n in groups)
                + ")"
            )
        shard = (
            f" (shard of {self.n_mine} of {self.n_samples} samples)" if self.world_size > 1 else ""
        )
        head = (
            f"{who}{self.n_tracked} video(s) tracked{why}, {self.n_done_before} already done{shard}"
        )
        multi = (
            f"; {self.n_multi_instance} with several instances of a class"
            if self.n_multi_instance
            else ""
        )
        this_call = f"; this call: {_verdicts(self.counts)}" if self.n_tracked else ""
        if self.merged:
            where = (
                f"; run: {_verdicts(self.run_counts)} -> {self.tracks_path}, {self.detections_path}"
            )
        elif self.rank != 0:
            where = "; rank 0 merges the tables"
        else:
            where = (
                f"; not merged: {self.waiting_for} sample(s) of other ranks unfinished "
                "(rerun 'spatialalign track' to finish and merge)"
            )
        return f"track: {head}{this_call}{multi}{where}"


def _verdicts(counts: Counter) -> str:
    n_valid = counts.get("valid", 0)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "valid")
    n_rej = sum(v for k, v in counts.items() if k != "valid")
    return f"{n_valid} valid, {n_rej} rejected" + (f" ({reasons})" if reasons else "")


@dataclass
class _Sample:
    sample_id: str
    prompt_id: str
    path: Path
    class_names: tuple[str, str]
    made_as: str | None = None
    """The video's content fingerprint in the manifest's record (``sample``/``ingest``)."""


@dataclass(frozen=True)
class Fresh:
    """One sample's result as its parts hold it: the track rows, the detections row and the
    video it was made from. Plain data, so worker processes hand it back cheaply."""

    rows: list[dict[str, Any]]
    det_row: dict[str, Any]
    video: StampedFingerprint


def _read_samples(run: RunDir, prompts_path: Path | None) -> list[_Sample]:
    """The manifest's samples with their class names, in manifest order."""
    rows = run.read_manifest(["prompt_id", "path"]).to_pylist()
    names = {p.prompt_id: (p.animal, p.object) for p in run.read_prompts(prompts_path)}
    missing = sorted({r["prompt_id"] for r in rows} - set(names))
    if missing:
        raise SpatialAlignError(
            f"{len(missing)} prompt_id(s) of the manifest are not in "
            f"{prompts_path or run.prompts_path}: {', '.join(missing[:5])}"
        )
    made = run.sample_records()
    return [
        _Sample(
            r["sample_id"],
            r["prompt_id"],
            Path(r["path"] or ""),
            names[r["prompt_id"]],
            (made.get(r["sample_id"]) or {}).get("fingerprint") or None,
        )
        for r in rows
    ]


def settings_key(
    detector: Detector, scoring: ScoringConfig, tracker: TrackerConfig, extra: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A short hash of everything that changes a sample's result, and what it hashes:
    the detector (name, its config when it has one, ``extra`` such as weight fingerprints),
    the thresholds and the tracker."""
    settings: dict[str, Any] = {
        "detector": detector.name,
        "box_threshold": scoring.box_threshold,
        "text_threshold": scoring.text_threshold,
        "max_redundant": scoring.max_redundant,
        "min_valid": scoring.min_valid,
        "min_run": scoring.min_run,
        "tracker": asdict(tracker),
        **{k: str(v) for k, v in extra.items() if v is not None},
    }
    config = getattr(detector, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        settings["detector_config"] = asdict(config)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return digest[:12], settings


def _decoded(samples: Sequence[_Sample], prefetch: int, stop: threading.Event) -> Iterator:
    """Yields (sample, frames or None, error or None, the video's fingerprint), decoding on
    a background thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    end = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        for s in samples:
            stamp = StampedFingerprint.of(s.path)  # the content about to be decoded
            try:
                item = (s, read_video(s.path), None, stamp)
            except VideoReadError as e:
                item = (s, None, e, stamp)
            except Exception as e:  # noqa: BLE001 - any decoder failure is an unreadable video
                item = (s, None, VideoReadError(f"cannot decode {s.path}: {e}"), stamp)
            if not put(item):
                return
        put(end)

    thread = threading.Thread(target=work, name="track-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def process_video(
    frames: np.ndarray,
    class_names: Sequence[str],
    detector: Detector,
    scoring: ScoringConfig,
    tracker: TrackerConfig,
) -> tuple[VideoValidity, list[dict[str, Any]] | None, dict[str, int]]:
    """Detects, judges and (when valid) tracks one video.

    Returns the verdict, the main-track rows (sample_id left empty; ``None`` when
    rejected) and the number of instances per role (empty when rejected).
    """
    detections = detector.detect(frames, list(class_names))
    if len(detections) != len(frames):
        raise RuntimeError(
            f"detector {detector.name!r} returned {len(detections)} frame(s) for {len(frames)}"
        )
    verdict = judge_detections(detections, class_names, scoring)
    if not verdict.valid:
        return verdict, None, {}
    tracks = track_video(detections, class_names, tracker, anchor_frame=verdict.anchor_frame)
    return verdict, tracks.rows(""), tracks.n_instances


def _write_part(
    run: RunDir,
    key: str,
    sample: _Sample,
    verdict: VideoValidity,
    rows: list[dict],
    stamp: StampedFingerprint,
) -> Fresh:
    tracks_part, det_part = run.track_part_paths(key, sample.sample_id)
    for r in rows:
        r["sample_id"] = sample.sample_id
    write_parquet(pa.Table.from_pylist(rows, TRACKS), tracks_part)
    det_row = verdict.to_row(sample.sample_id)
    det = pa.Table.from_pylist([det_row], DETECTIONS)
    record = {"video": stamp.to_dict(), "path": str(sample.path)}
    write_parquet(with_record(det, record), det_part)
    return Fresh(rows, det_row, stamp)


def _part_video(det_part: Path) -> StampedFingerprint | None:
    """The video fingerprint a detections part was made from (None: no part, or no record)."""
    return StampedFingerprint.from_dict((record_of(det_part) or {}).get("video"))


def _redo_reason(
    run: RunDir, key: str, sample: _Sample, earlier: dict[str, Any] | None
) -> str | None:
    """Why ``sample`` must be tracked now; None when its part is current."""
    det_part = run.track_part_paths(key, sample.sample_id)[1]
    if not det_part.is_file():
        if (
            earlier
            and earlier.get("settings_key") != key
            and sample.sample_id in (earlier.get("videos") or {})
        ):
            return earlier["why"]
        return "new"
    known = _part_video(det_part)
    if known is None:
        return "no record of the video it was made from"
    return "video changed" if _video_changed(sample, known) else None


def _video_changed(sample: _Sample, known: StampedFingerprint) -> bool:
    """Whether ``sample``'s video no longer has the content ``known`` fingerprinted."""
    if StampedFingerprint.of(sample.path, known).fingerprint != known.fingerprint:
        return True
    if sample.made_as not in (None, known.fingerprint):
        # the manifest saw other content than the tracks were made from, with the same
        # size and mtime: the stat shortcut cannot be trusted, hash the file again
        return StampedFingerprint.of(sample.path).fingerprint != known.fingerprint
    return False


def _pending(
    run: RunDir, key: str, samples: Sequence[_Sample], fresh: dict[str, Fresh]
) -> list[_Sample]:
    """The samples whose part is not current. A result of this call (``fresh``) is current
    while its video is unchanged (else it is dropped from ``fresh``); the others' parts are
    read to find out."""
    out = []
    for s in samples:
        done = fresh.get(s.sample_id)
        if done is not None:
            if not _video_changed(s, done.video):
                continue
            del fresh[s.sample_id]  # stale: only a part redone from the new video will do
        if _redo_reason(run, key, s, None) is not None:
            out.append(s)
    return out


def _earlier_settings(run: RunDir, key: str, described: dict[str, Any]) -> dict[str, Any] | None:
    """The record of the tables a previous ``track`` wrote, with why its settings differ."""
    record = record_of(run.detections_path) if run.detections_path.is_file() else None
    if not record or record.get("stage") != "track" or record.get("settings_key") == key:
        return record
    changes = explain_change(record.get("settings") or {}, described)
    return {**record, "why": "settings changed: " + (", ".join(changes) or "other detector files")}


def merge_track_parts(
    run: RunDir,
    key: str,
    samples: Sequence[_Sample],
    record: dict[str, Any],
    fresh: Mapping[str, Fresh] | None = None,
) -> Counter:
    """Writes the final tables from the parts of ``samples`` (all must exist), recording
    ``record`` (settings, preset) and each video's fingerprint in both files. The results
    in ``fresh`` (this call's) are taken as they are, not read back from their parts; the
    tables are the same either way."""
    fresh = fresh or {}
    tracks, dets = [], []
    videos: dict[str, str] = {}
    run_rows: list[dict[str, Any]] = []  # consecutive fresh samples: one table each way
    run_dets: list[dict[str, Any]] = []

    def flush() -> None:
        if run_dets:
            tracks.append(pa.Table.from_pylist(run_rows, TRACKS))
            dets.append(pa.Table.from_pylist(run_dets, DETECTIONS))
            run_rows.clear()
            run_dets.clear()

    for s in samples:
        done = fresh.get(s.sample_id)
        if done is not None:
            videos[s.sample_id] = done.video.fingerprint
            run_rows.extend(done.rows)
            run_dets.append(done.det_row)
            continue
        flush()
        tracks_part, det_part = run.track_part_paths(key, s.sample_id)
        det = read_parquet(det_part, "track part")
        known = StampedFingerprint.from_dict((record_of(det) or {}).get("video"))
        videos[s.sample_id] = known.fingerprint if known else ""
        dets.append(validate_table(det, "detections", det_part))
        tracks.append(
            validate_table(read_parquet(tracks_part, "track part"), "tracks", tracks_part)
        )
    flush()
    det_table = pa.concat_tables(
        [DETECTIONS.empty_table()] + [t.select(DETECTIONS.names).cast(DETECTIONS) for t in dets]
    )
    track_table = pa.concat_tables(
        [TRACKS.empty_table()] + [t.select(TRACKS.names).cast(TRACKS) for t in tracks]
    )
    full = {**record, "stage": "track", "settings_key": key, "videos": videos}
    write_parquet(with_record(track_table, full), run.tracks_path)
    write_parquet(with_record(det_table, full), run.detections_path)
    return Counter(
        "valid" if st == "valid" else reason
        for st, reason in zip(
            det_table.column("status").to_pylist(),
            det_table.column("reason").to_pylist(),
            strict=True,
        )
    )


def resolve_shard(
    run: RunDir, rank: int | None, world_size: int | None, overwrite: bool
) -> tuple[int, int]:
    """This process's (rank, world size): the arguments, else ``RANK`` / ``WORLD_SIZE``;
    ``overwrite`` only in a single process."""
    env_rank, env_world = env_rank_world()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise SpatialAlignError(f"invalid rank {rank} / world size {world_size}")
    if overwrite and world_size > 1:
        raise SpatialAlignError(
            f"--overwrite works in a single process; delete {run.track_parts_dir} instead"
        )
    return rank, world_size


def prepare_parts_dir(run: RunDir, key: str, described: dict[str, Any], overwrite: bool) -> None:
    """Creates the parts directory of settings ``key`` (emptied first on ``overwrite``) and
    writes what the key hashes beside it."""
    parts = run.track_parts_dir / key
    if overwrite and parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    write_json(described, run.track_settings_path(key))


def plan_tracking(
    run: RunDir, key: str, mine: Sequence[_Sample], earlier: dict[str, Any] | None
) -> tuple[list[_Sample], Counter]:
    """The samples of ``mine`` to track now (the others' parts are current), and how many
    for each reason (``new``, ``video changed``, ``settings changed: ...``)."""
    todo, why = [], Counter()
    for s in mine:
        reason = _redo_reason(run, key, s, earlier)
        if reason is not None:
            todo.append(s)
            why[reason] += 1
    return todo, why


def track_samples(
    run: RunDir,
    key: str,
    todo: Sequence[_Sample],
    detector: Detector,
    scoring: ScoringConfig,
    tracker: TrackerConfig,
    summary: TrackSummary,
    *,
    prefetch: int = 2,
    progress: bool = True,
) -> None:
    """Decodes (ahead, on a thread), detects, judges and tracks ``todo``, writing each
    sample's part; counts and times into ``summary``."""
    bar = tqdm(
        total=len(todo),
        desc="track" if summary.world_size == 1 else f"track[{summary.rank}]",
        unit="video",
        disable=not progress or not todo,
        position=summary.rank if summary.world_size > 1 else None,
    )
    stop = threading.Event()
    t_wait = time.perf_counter()
    with bar:
        for sample, frames, error, stamp in _decoded(todo, prefetch, stop):
            t0 = time.perf_counter()
            summary.decode_wait_s += t0 - t_wait
            if error is not None:
                verdict, rows, instances = rejected(REASON_UNREADABLE), None, {}
                bar.write(f"track: {sample.sample_id}: {error}", file=sys.stderr)
            else:
                verdict, rows, instances = process_video(
                    frames, sample.class_names, detector, scoring, tracker
                )
            summary.fresh[sample.sample_id] = _write_part(
                run, key, sample, verdict, rows or [], stamp
            )
            summary.n_tracked += 1
            summary.counts["valid" if verdict.valid else verdict.reason] += 1
            summary.n_multi_instance += int(any(n > 1 for n in instances.values()))
            bar.update(1)
            bar.set_postfix(valid=summary.counts.get("valid", 0), refresh=False)
            t_wait = time.perf_counter()
            summary.detect_s += t_wait - t0


def merge_when_complete(
    run: RunDir,
    key: str,
    samples: Sequence[_Sample],
    record: dict[str, Any],
    summary: TrackSummary,
    timeout: float,
) -> None:
    """Waits up to ``timeout`` seconds for every sample's part to be current (other ranks
    may be redoing stale ones), then merges the final tables into ``summary``'s run."""
    deadline = time.monotonic() + timeout
    waiting = _pending(run, key, samples, summary.fresh)
    while waiting and time.monotonic() < deadline:
        time.sleep(0.2)
        waiting = _pending(run, key, waiting, summary.fresh)
    summary.waiting_for = len(waiting)
    if not waiting:
        summary.run_counts = merge_track_parts(run, key, samples, record, summary.fresh)
        summary.merged = True
        summary.fresh = {}


def track_run(
    run_dir: str | os.PathLike[str],
    detector: Detector,
    scoring: ScoringConfig,
    tracker: TrackerConfig | None = None,
    *,
    prompts: str | os.PathLike[str] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    settings: Mapping[str, Any] | None = None,
    preset: str | None = None,
    overwrite: bool = False,
    prefetch: int = 2,
    merge_timeout: float = 3600.0,
    merge: bool = True,
    fresh: Mapping[str, Fresh] | None = None,
    progress: bool = True,
) -> TrackSummary:
    """Tracks every sample of ``run_dir`` (this rank's share) and merges the tables.

    ``settings`` adds detector details (e.g. the model directory) to the key that
    decides whether earlier parts can be reused; ``overwrite`` discards them (one
    process only). ``preset`` is the scoring preset's name, recorded in the tables so
    ``score-batch`` scores with the same one. Rank and world size default to ``RANK`` /
    ``WORLD_SIZE``. ``merge=False``: rank 0 does not merge either (a caller that gathers
    the ranks' :attr:`TrackSummary.fresh` merges after, passing them as ``fresh``: results
    other processes of the same call wrote, taken as current while their videos are).
    """
    run = RunDir(run_dir).require()
    tracker = tracker or TrackerConfig()
    rank, world_size = resolve_shard(run, rank, world_size, overwrite)
    samples = _read_samples(run, Path(prompts) if prompts else None)
    key, described = settings_key(detector, scoring, tracker, settings or {})
    prepare_parts_dir(run, key, described, overwrite)

    given = dict(fresh or {})
    mine = [s for s in samples[rank::world_size] if s.sample_id not in given]
    todo, why = plan_tracking(run, key, mine, _earlier_settings(run, key, described))
    summary = TrackSummary(
        run.root,
        len(samples),
        rank,
        world_size,
        n_mine=len(mine),
        n_done_before=len(mine) - len(todo),
        reasons=why,
        fresh=given,
    )
    track_samples(
        run, key, todo, detector, scoring, tracker, summary, prefetch=prefetch, progress=progress
    )
    if rank == 0 and merge:
        record = {"preset": preset, "settings": described}
        timeout = merge_timeout if world_size > 1 else 0.0
        merge_when_complete(run, key, samples, record, summary, timeout)
    return summary
