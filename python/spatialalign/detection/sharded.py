"""``track`` from plain data (a :class:`~spatialalign.detection.spec.TrackSpec`), so several
processes can each build the detector and track their share of a run
(:func:`track_on_workers`).

``track``, ``eval`` and ``loop`` all describe tracking with a ``TrackSpec`` around the same
``DetectorSpec``; every one of them records the same settings, so a run tracked by one is
reused by the others.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from spatialalign.detection.pipeline import Fresh, TrackSummary, track_run
from spatialalign.detection.spec import TrackSpec
from spatialalign.parallel.workers import Workers


@lru_cache(maxsize=2)
def detector_of(spec: TrackSpec) -> Any:
    """The detector ``spec`` names, built once per process (a loop tracks many runs)."""
    from spatialalign.detection.registry import make_detector

    scoring, detection = spec.scoring(), spec.detection
    return make_detector(
        detection.detector,
        model_dir=detection.gdino_dir,
        onnx_dir=detection.onnx_dir,
        box_threshold=scoring.box_threshold,
        text_threshold=scoring.text_threshold,
        device=spec.device,
        batch_size=spec.batch_size,
        sam=detection.sam,
    )


def track_with(
    spec: TrackSpec,
    run_dir: str | os.PathLike[str],
    *,
    prompts: str | os.PathLike[str] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    overwrite: bool = False,
    merge_timeout: float = 3600.0,
    merge: bool = True,
    fresh: Mapping[str, Fresh] | None = None,
    progress: bool = True,
) -> TrackSummary:
    """:func:`track_run` with the detector, scoring and tracker settings of ``spec``."""
    from spatialalign.detection.tracker import tracker_config

    return track_run(
        run_dir,
        detector_of(spec),
        spec.scoring(),
        tracker_config(spec.preset_name),
        prompts=prompts,
        rank=rank,
        world_size=world_size,
        preset=spec.preset_name,
        settings=spec.weights(),
        overwrite=overwrite,
        merge_timeout=merge_timeout,
        merge=merge,
        fresh=fresh,
        progress=progress,
    )


def _track_rank(
    rank: int, world_size: int, spec: TrackSpec, run_dir: str, prompts: str | None, progress: bool
) -> TrackSummary:
    # no merge here: track_on_workers merges once every rank is done, from their results
    return track_with(
        spec,
        run_dir,
        prompts=prompts,
        rank=rank,
        world_size=world_size,
        merge=False,
        progress=progress,
    )


def track_on_workers(
    run_dir: str | os.PathLike[str],
    spec: TrackSpec,
    workers: Workers,
    *,
    prompts: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> TrackSummary:
    """Tracks the run split over ``workers``' processes, merges, and sums what they did.

    The ranks hand back what they tracked (:attr:`TrackSummary.fresh`), so the merge here
    reads from disk only the parts of samples done by earlier calls.
    """
    if workers.n == 1:
        return track_with(spec, run_dir, prompts=prompts, progress=progress)
    run_dir = str(Path(run_dir).absolute())
    prompts = None if prompts is None else str(Path(prompts).absolute())
    parts = workers.run(_track_rank, spec, run_dir, prompts, progress)
    fresh: dict[str, Fresh] = {}
    for part in parts:
        fresh.update(part.fresh)
        part.fresh = {}
    # every rank has finished: rank 0's pass over the run only merges (no waiting)
    final = track_with(
        spec,
        run_dir,
        prompts=prompts,
        rank=0,
        world_size=workers.n,
        merge_timeout=0.0,
        fresh=fresh,
        progress=False,
    )
    total = TrackSummary(
        final.run_dir,
        final.n_samples,
        n_mine=final.n_samples,
        run_counts=final.run_counts,
        merged=final.merged,
        waiting_for=final.waiting_for,
    )
    for part in parts:
        total.n_done_before += part.n_done_before
        total.n_tracked += part.n_tracked
        total.reasons += Counter(part.reasons)
        total.counts += Counter(part.counts)
        total.n_multi_instance += part.n_multi_instance
        total.decode_wait_s += part.decode_wait_s
        total.detect_s += part.detect_s
    return total
