"""In-process DSR-Scores of sampled frames: the ``track`` and ``score-batch`` library code
on arrays, no video files.

Each video goes through :func:`spatialalign.detection.pipeline.process_video` (the
detector, the validity rules of the preset, the tracker's main tracks: what ``track``
writes for it), then all valid ones through one :func:`dsr_geom.dsr_batch` call on a frame
grid with NaN rows where a track has no box (what ``score-batch`` reads back from
``tracks.parquet``). A video the rules reject keeps its reason; a valid video whose tracks
keep too few frames is ``too_few_frames``, as ``score-batch`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.detection.pipeline import process_video
from spatialalign.detection.spec import TrackSpec

DSR_TERMS = ("dsr", "r_init", "r_final", "g_init", "g_final")


@dataclass
class Verdicts:
    """Per video: valid, the rejection reason ("" when valid), the DSR terms, kept frames."""

    valid: np.ndarray
    reason: list[str]
    terms: dict[str, np.ndarray]
    n_kept: np.ndarray

    @property
    def dsr(self) -> np.ndarray:
        return self.terms["dsr"]


class Scorer:
    """The detector, validity preset and tracker of a :class:`TrackSpec`, built once."""

    def __init__(self, spec: TrackSpec) -> None:
        from spatialalign.detection.sharded import detector_of
        from spatialalign.detection.tracker import tracker_config

        spec.detection.validate()
        self.spec = spec
        self.scoring = spec.scoring()
        self.tracker = tracker_config(spec.preset_name)
        self.detector = detector_of(spec)

    def score(self, frames: np.ndarray, prompts: Sequence[DSRPrompt]) -> Verdicts:
        """Verdicts of ``frames`` ``[N, F, H, W, 3]`` (uint8), video i showing ``prompts[i]``."""
        import dsr_geom

        if len(frames) != len(prompts):
            raise ValueError(f"{len(frames)} videos but {len(prompts)} prompts")
        n = len(prompts)
        valid = np.zeros(n, dtype=bool)
        reason = [""] * n
        grids = []
        for i, (video, p) in enumerate(zip(frames, prompts, strict=True)):
            names = (p.animal, p.object)
            verdict, rows, _ = process_video(video, names, self.detector, self.scoring,
                                             self.tracker)  # fmt: skip
            if not verdict.valid:
                reason[i] = verdict.reason
                continue
            valid[i] = True
            grids.append((i, _box_grid(rows or [], len(video))))
        terms = {k: np.full(n, np.nan) for k in DSR_TERMS}
        n_kept = np.zeros(n, dtype=np.int64)
        if grids:
            idx = np.array([i for i, _ in grids])
            animal = np.concatenate([g[0] for _, g in grids])
            obj = np.concatenate([g[1] for _, g in grids])
            offsets = np.concatenate([[0], np.cumsum([len(g[0]) for _, g in grids])])
            out = dsr_geom.dsr_batch(
                animal, obj, offsets.astype(np.int64),
                [prompts[i].initial for i in idx], [prompts[i].final for i in idx],
                m=self.scoring.m, min_frames=self.scoring.min_frames,
            )  # fmt: skip
            for k in DSR_TERMS:
                terms[k][idx] = out[k]
            n_kept[idx] = out["n_kept"]
            for i in idx[np.isnan(out["dsr"])]:
                valid[i] = False
                reason[i] = "too_few_frames"
        return Verdicts(valid, reason, terms, n_kept)


def _box_grid(rows: list[dict], n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(animal, object) float64 ``[n_frames, 4]`` boxes of the main tracks' rows, NaN rows
    where a track has no box."""
    grid = {"animal": np.full((n_frames, 4), np.nan), "object": np.full((n_frames, 4), np.nan)}
    for r in rows:
        grid[r["label"]][r["frame"]] = (r["x0"], r["y0"], r["x1"], r["y1"])
    return grid["animal"], grid["object"]
