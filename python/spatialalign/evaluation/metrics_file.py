"""``RUN/metrics.parquet``: per-video quality and peer spatial metrics, recomputed per row.

Columns: sample_id, :data:`~spatialalign.evaluation.metrics.METRIC_COLUMNS` (weight-free
proxies always; DINOv2 ID consistency, CLIP-IQA and MUSIQ imaging quality when their
models are given, else NaN) and :data:`~spatialalign.evaluation.peer.PEER_COLUMNS`
(T2V-CompBench and VBench spatial scores from the same tracks), one row per manifest
sample in manifest order.

Reuse: the file records, per sample, a key over the video's content fingerprint and the
sample's track boxes, and once the metric settings (the DINOv2, CLIP and MUSIQ weights'
content fingerprints, the DINOv2 crop size). A rerun recomputes exactly the rows whose
key changed, and every row when the settings changed; the peer scores are cheap and
always recomputed from the tracks and prompts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_parquet, write_parquet
from spatialalign.core.provenance import StampedFingerprint, explain_change, record_of, with_record
from spatialalign.core.video import VideoReadError, read_video
from spatialalign.evaluation.metrics import METRIC_COLUMNS, tracked_boxes_by_frame, video_metrics
from spatialalign.evaluation.peer import PEER_COLUMNS, peer_scores
from spatialalign.rundir.layout import RunDir
from spatialalign.rundir.tracks import Tracks, read_tracks

if TYPE_CHECKING:
    from torch import nn

    from spatialalign.evaluation.neural import ClipIqa

STAGE = "eval-metrics"
ALL_COLUMNS: tuple[str, ...] = (*METRIC_COLUMNS, *PEER_COLUMNS)
"""The metric columns of ``metrics.parquet`` (after ``sample_id``)."""


@dataclass
class MetricsResult:
    """What :func:`write_metrics` computed and reused."""

    table: pa.Table
    n_computed: int
    n_reused: int
    reasons: Counter = field(default_factory=Counter)
    """Why rows were computed: ``new``, ``video or tracks changed``, ``settings changed: ...``."""

    def line(self) -> str:
        why = "; ".join(f"{n} {r}" for r, n in self.reasons.most_common())
        return (
            f"metrics: {self.n_computed} video(s) measured"
            + (f" ({why})" if why else "")
            + f", {self.n_reused} reused"
        )


def _tracks_digest(tracks: Tracks, i: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in tracks.sample(i):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _row_key(video_fingerprint: str, tracks_digest: str) -> str:
    return hashlib.blake2b(
        json.dumps([video_fingerprint, tracks_digest]).encode(), digest_size=16
    ).hexdigest()


def _earlier(run: RunDir) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The record and ``{sample_id: metric values}`` of an existing metrics.parquet."""
    path = run.metrics_path
    if not path.is_file():
        return {}, {}
    record = record_of(path) or {}
    if record.get("stage") != STAGE:
        return {}, {}
    try:
        table = read_parquet(path, "metrics")
    except SpatialAlignError:
        return {}, {}
    if not set(METRIC_COLUMNS) <= set(table.column_names):
        return {}, {}
    cols = table.select(["sample_id", *METRIC_COLUMNS]).to_pydict()
    rows = {sid: {c: cols[c][i] for c in METRIC_COLUMNS} for i, sid in enumerate(cols["sample_id"])}
    return record, rows


def _measure(
    path: str | None,
    tracks: Tracks,
    i: int,
    dino: Any,
    clip_iqa: Any,
    musiq: Any,
    dino_image_size: int,
) -> dict[str, float]:
    try:
        if not path:
            raise VideoReadError("no video")
        frames = read_video(path)
    except VideoReadError:
        return {c: math.nan for c in METRIC_COLUMNS}
    animal, obj = tracked_boxes_by_frame(tracks, i, len(frames))
    return video_metrics(
        frames,
        animal,
        obj,
        dino=dino,
        clip_iqa=clip_iqa,
        musiq=musiq,
        dino_image_size=dino_image_size,
    )


def write_metrics(
    run: RunDir,
    *,
    dino: nn.Module | None = None,
    clip_iqa: ClipIqa | None = None,
    musiq: nn.Module | None = None,
    model_ids: Mapping[str, str | None] | None = None,
    dino_image_size: int = 518,
    progress: bool = True,
) -> MetricsResult:
    """Measures every manifest sample of ``run`` (reusing current rows) and writes
    ``metrics.parquet``; ``model_ids`` identifies the models passed in (``dinov2``,
    ``clip``, ``musiq``: their weights' content fingerprints, None when absent)."""
    manifest = run.read_manifest(["prompt_id", "path", "num_frames"])
    ids = manifest.column("sample_id").to_pylist()
    paths = manifest.column("path").to_pylist()
    prompts = {p.prompt_id: p for p in run.read_prompts()}
    pids = manifest.column("prompt_id").to_pylist()
    missing = sorted({p for p in pids if p not in prompts})
    if missing:
        raise SpatialAlignError(f"{len(missing)} prompt id(s) of the manifest lack a prompt")
    tracks = read_tracks(run.tracks_path, pa.array(ids, pa.string()), progress=False)

    settings = {"version": 1, "dino_image_size": dino_image_size, **dict(model_ids or {})}
    record, old_rows = _earlier(run)
    same_settings = record.get("settings") == settings
    old_videos = record.get("videos") or {}
    old_keys = record.get("rows") or {}
    changed = ", ".join(explain_change(record.get("settings") or {}, settings))

    stamps, keys, todo, reasons = {}, {}, [], Counter()
    for i, (sid, path) in enumerate(zip(ids, paths, strict=True)):
        known = StampedFingerprint.from_dict(old_videos.get(sid))
        stamps[sid] = StampedFingerprint.of(path, known) if path else StampedFingerprint("missing")
        keys[sid] = _row_key(stamps[sid].fingerprint, _tracks_digest(tracks, i))
        if sid not in old_rows or sid not in old_keys:
            reasons["new"] += 1
        elif not same_settings:
            reasons[f"settings changed: {changed}"] += 1
        elif old_keys[sid] != keys[sid]:
            reasons["video or tracks changed"] += 1
        else:
            continue
        todo.append(i)

    rows = {sid: old_rows[sid] for sid in ids if sid in old_rows}
    for i in tqdm(todo, desc="metrics", unit="video", disable=not progress or not todo):
        rows[ids[i]] = _measure(paths[i], tracks, i, dino, clip_iqa, musiq, dino_image_size)

    num_frames = manifest.column("num_frames").to_pylist()
    peer = peer_scores(
        tracks,
        ids,
        [prompts[p].initial for p in pids],
        [prompts[p].final for p in pids],
        num_frames=num_frames,
    )
    cols: dict[str, pa.Array] = {"sample_id": pa.array(ids, pa.string())}
    for c in METRIC_COLUMNS:
        cols[c] = pa.array([_float(rows[sid][c]) for sid in ids], pa.float64())
    for c in PEER_COLUMNS:
        cols[c] = peer.column(c)
    full = {
        "stage": STAGE,
        "settings": settings,
        "videos": {sid: s.to_dict() for sid, s in stamps.items()},
        "rows": keys,
    }
    table = with_record(pa.table(cols), full)
    write_parquet(table, run.metrics_path)
    return MetricsResult(table, len(todo), len(ids) - len(todo), reasons)


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def metric_means(table: pa.Table) -> dict[str, float | None]:
    """The mean of each metric column over the videos where it is defined (None: nowhere)."""
    out: dict[str, float | None] = {}
    for c in ALL_COLUMNS:
        if c not in table.column_names:
            continue
        v = table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        v = v[np.isfinite(v)]
        out[c] = float(v.mean()) if len(v) else None
    return out
