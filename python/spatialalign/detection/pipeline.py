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
A rerun skips samples whose parts exist. Under ``torchrun`` / ``accelerate launch``
(``RANK`` / ``WORLD_SIZE``) rank r takes every world_size-th sample; rank 0 merges
all parts into the two final tables once they all exist (or the next plain run
does). The parts are kept as the resumable cache; the final tables are derived
from them and list the manifest's samples in manifest order.
"""

from __future__ import annotations

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
from urllib.parse import quote

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from spatialalign.config import ScoringConfig
from spatialalign.detection.base import Detector
from spatialalign.detection.tracker import TrackerConfig, track_video
from spatialalign.detection.validity import (
    REASON_UNREADABLE,
    VideoValidity,
    judge_detections,
    rejected,
)
from spatialalign.distributed import env_rank_world
from spatialalign.errors import SpatialAlignError
from spatialalign.io import read_parquet, write_json, write_parquet
from spatialalign.schemas import DETECTIONS, TRACKS, validate_table
from spatialalign.video import VideoReadError, read_video

TRACKS_NAME = "tracks.parquet"
DETECTIONS_NAME = "detections.parquet"
PARTS_DIR = "track_parts"
MANIFEST = Path("samples") / "manifest.parquet"
PROMPTS_NAME = "prompts.parquet"


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
    """Of those, already finished by an earlier run (skipped)."""
    n_tracked: int = 0
    """Tracked by this call."""
    counts: Counter = field(default_factory=Counter)
    """``valid`` / rejection reason -> videos, over the merged table (or this call's work)."""
    n_multi_instance: int = 0
    """Videos tracked now whose animal or object showed more than one instance."""
    merged: bool = False
    waiting_for: int = 0
    """Samples other ranks had not finished when the merge gave up waiting."""
    decode_wait_s: float = 0.0
    """Seconds the detector waited for a decoded video."""
    detect_s: float = 0.0
    """Seconds spent detecting and tracking."""

    @property
    def tracks_path(self) -> Path:
        return self.run_dir / TRACKS_NAME

    @property
    def detections_path(self) -> Path:
        return self.run_dir / DETECTIONS_NAME

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        who = f"rank {self.rank}/{self.world_size}: " if self.world_size > 1 else ""
        head = (
            f"{who}{self.n_tracked} video(s) tracked, {self.n_done_before} already done"
            f" (shard of {self.n_mine} of {self.n_samples} samples)"
            if self.world_size > 1
            else f"{self.n_tracked} video(s) tracked, {self.n_done_before} already done"
        )
        n_valid = self.counts.get("valid", 0)
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()) if k != "valid")
        n_rej = sum(v for k, v in self.counts.items() if k != "valid")
        verdict = f"{n_valid} valid, {n_rej} rejected" + (f" ({reasons})" if reasons else "")
        multi = (
            f"; {self.n_multi_instance} with several instances of a class"
            if self.n_multi_instance
            else ""
        )
        if self.merged:
            where = f" -> {self.tracks_path}, {self.detections_path}"
        elif self.rank != 0:
            where = "; rank 0 merges the tables"
        else:
            where = (
                f"; not merged: {self.waiting_for} sample(s) of other ranks unfinished "
                "(rerun 'spatialalign track' to finish and merge)"
            )
        scope = "" if self.merged else " (this call)"
        return f"track: {head}; {verdict}{scope}{multi}{where}"


@dataclass
class _Sample:
    sample_id: str
    prompt_id: str
    path: Path
    class_names: tuple[str, str]


def _read_samples(run_dir: Path, prompts_path: Path | None) -> list[_Sample]:
    """The manifest's samples with their class names, in manifest order."""
    manifest_path = run_dir / MANIFEST
    table = validate_table(
        read_parquet(manifest_path, "manifest"),
        "manifest",
        manifest_path,
        columns=["sample_id", "prompt_id", "path"],
    )
    rows = table.select(["sample_id", "prompt_id", "path"]).to_pylist()
    ids = [r["sample_id"] for r in rows]
    dupes = sorted({s for s in ids if ids.count(s) > 1}) if len(set(ids)) < len(ids) else []
    if dupes:
        raise SpatialAlignError(f"{manifest_path}: duplicate sample_id(s) {', '.join(dupes[:5])}")

    from spatialalign.prompts import read_prompts

    prompts_path = prompts_path or run_dir / PROMPTS_NAME
    if not prompts_path.is_file():
        raise SpatialAlignError(f"prompts file not found: {prompts_path} (pass --prompts FILE)")
    names = {p.prompt_id: (p.animal, p.object) for p in read_prompts(prompts_path)}
    missing = sorted({r["prompt_id"] for r in rows} - set(names))
    if missing:
        raise SpatialAlignError(
            f"{len(missing)} prompt_id(s) of the manifest are not in {prompts_path}: "
            f"{', '.join(missing[:5])}"
        )
    samples = []
    for r in rows:
        path = Path(r["path"]) if r["path"] else Path()
        if r["path"] and not path.is_absolute():
            in_samples = manifest_path.parent / path
            path = in_samples if in_samples.exists() else run_dir / path
        samples.append(_Sample(r["sample_id"], r["prompt_id"], path, names[r["prompt_id"]]))
    return samples


def settings_key(
    detector: Detector, scoring: ScoringConfig, tracker: TrackerConfig, extra: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A short hash of everything that changes a sample's result, and what it hashes."""
    settings = {
        "detector": detector.name,
        "box_threshold": scoring.box_threshold,
        "text_threshold": scoring.text_threshold,
        "max_redundant": scoring.max_redundant,
        "min_valid": scoring.min_valid,
        "min_run": scoring.min_run,
        "tracker": asdict(tracker),
        **{k: str(v) for k, v in extra.items() if v is not None},
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return digest[:12], settings


def _part_paths(parts: Path, sample_id: str) -> tuple[Path, Path]:
    stem = quote(sample_id, safe="")
    return parts / f"{stem}.tracks.parquet", parts / f"{stem}.det.parquet"


def _decoded(samples: Sequence[_Sample], prefetch: int, stop: threading.Event) -> Iterator:
    """Yields (sample, frames or None, error or None), decoding on a background thread."""
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
            try:
                item = (s, read_video(s.path), None)
            except VideoReadError as e:
                item = (s, None, e)
            except Exception as e:  # noqa: BLE001 - any decoder failure is an unreadable video
                item = (s, None, VideoReadError(f"cannot decode {s.path}: {e}"))
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


def _write_part(parts: Path, sample_id: str, verdict: VideoValidity, rows: list[dict]) -> None:
    tracks_part, det_part = _part_paths(parts, sample_id)
    for r in rows:
        r["sample_id"] = sample_id
    write_parquet(pa.Table.from_pylist(rows, TRACKS), tracks_part)
    write_parquet(pa.Table.from_pylist([verdict.to_row(sample_id)], DETECTIONS), det_part)


def merge_parts(run_dir: Path, parts: Path, samples: Sequence[_Sample]) -> Counter:
    """Writes the final tables from the parts of ``samples`` (all must exist)."""
    tracks, dets = [], []
    for s in samples:
        tracks_part, det_part = _part_paths(parts, s.sample_id)
        dets.append(validate_table(read_parquet(det_part, "track part"), "detections", det_part))
        tracks.append(
            validate_table(read_parquet(tracks_part, "track part"), "tracks", tracks_part)
        )
    det_table = pa.concat_tables(
        [DETECTIONS.empty_table()] + [t.select(DETECTIONS.names).cast(DETECTIONS) for t in dets]
    )
    track_table = pa.concat_tables(
        [TRACKS.empty_table()] + [t.select(TRACKS.names).cast(TRACKS) for t in tracks]
    )
    write_parquet(track_table, run_dir / TRACKS_NAME)
    write_parquet(det_table, run_dir / DETECTIONS_NAME)
    return Counter(
        "valid" if st == "valid" else reason
        for st, reason in zip(
            det_table.column("status").to_pylist(),
            det_table.column("reason").to_pylist(),
            strict=True,
        )
    )


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
    overwrite: bool = False,
    prefetch: int = 2,
    merge_timeout: float = 3600.0,
    progress: bool = True,
) -> TrackSummary:
    """Tracks every sample of ``run_dir`` (this rank's share) and merges the tables.

    ``settings`` adds detector details (e.g. the model directory) to the key that
    decides whether earlier parts can be reused; ``overwrite`` discards them (one
    process only). Rank and world size default to ``RANK`` / ``WORLD_SIZE``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SpatialAlignError(f"run directory not found: {run_dir}")
    tracker = tracker or TrackerConfig()
    env_rank, env_world = env_rank_world()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise SpatialAlignError(f"invalid rank {rank} / world size {world_size}")
    if overwrite and world_size > 1:
        raise SpatialAlignError(
            f"--overwrite works in a single process; delete {run_dir / PARTS_DIR} instead"
        )
    samples = _read_samples(run_dir, Path(prompts) if prompts else None)
    key, described = settings_key(detector, scoring, tracker, settings or {})
    parts = run_dir / PARTS_DIR / key
    if overwrite and parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    write_json(described, parts / "settings.json")

    mine = samples[rank::world_size]
    todo = [s for s in mine if not _part_paths(parts, s.sample_id)[1].is_file()]
    summary = TrackSummary(
        run_dir,
        len(samples),
        rank,
        world_size,
        n_mine=len(mine),
        n_done_before=len(mine) - len(todo),
    )
    bar = tqdm(
        total=len(todo),
        desc="track" if world_size == 1 else f"track[{rank}]",
        unit="video",
        disable=not progress or not todo,
        position=rank if world_size > 1 else None,
    )
    stop = threading.Event()
    t_wait = time.perf_counter()
    with bar:
        for sample, frames, error in _decoded(todo, prefetch, stop):
            t0 = time.perf_counter()
            summary.decode_wait_s += t0 - t_wait
            if error is not None:
                verdict, rows, instances = rejected(REASON_UNREADABLE), None, {}
                bar.write(f"track: {sample.sample_id}: {error}", file=sys.stderr)
            else:
                verdict, rows, instances = process_video(
                    frames, sample.class_names, detector, scoring, tracker
                )
            _write_part(parts, sample.sample_id, verdict, rows or [])
            summary.n_tracked += 1
            summary.counts["valid" if verdict.valid else verdict.reason] += 1
            summary.n_multi_instance += int(any(n > 1 for n in instances.values()))
            bar.update(1)
            bar.set_postfix(valid=summary.counts.get("valid", 0), refresh=False)
            t_wait = time.perf_counter()
            summary.detect_s += t_wait - t0

    if rank != 0:
        return summary
    deadline = time.monotonic() + (merge_timeout if world_size > 1 else 0.0)
    while True:
        waiting = [s for s in samples if not _part_paths(parts, s.sample_id)[1].is_file()]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    summary.waiting_for = len(waiting)
    if not waiting:
        summary.counts = merge_parts(run_dir, parts, samples)
        summary.merged = True
    return summary
