"""Browser-playable copies of a run's videos and the SSR curve beside each.

Why re-encode: ``sample`` writes toy clips as lossless RGB H.264 (``libx264rgb``, the
*High 4:4:4 Predictive* profile, ``gbrp`` pixels). That profile is outside the ones
browsers commit to play (Baseline/Main/High 4:2:0), and Chromium builds without
proprietary codecs play no H.264 at all; Debian's Chromium, built on the system
FFmpeg, happens to decode it, which is no promise for the reader's browser. The
report's copies are VP9 in WebM (yuv420p): royalty-free, played by every Chromium
build, Firefox and current Safari. Tiny toy frames are first enlarged by an even
integer factor with nearest-neighbour repetition, so each source pixel covers whole
2x2 chroma blocks and 4:2:0 subsampling does not smear the sprites' colours; large
videos are shrunk to at most ``max_side`` pixels to keep the report small.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import av
import dsr_geom
import numpy as np
import pyarrow as pa

from spatialalign.core.fileio import atomic_path
from spatialalign.core.video import read_video
from spatialalign.rundir.layout import RunDir
from spatialalign.rundir.tracks import read_tracks
from spatialalign.scoring.plots import plot_name, ssr_figure_png

WEB_VIDEO_SUFFIX = ".webm"


def display_frames(frames: np.ndarray, min_side: int = 128, max_side: int = 480) -> np.ndarray:
    """Frames resized for the page: ones under ``min_side`` enlarged by an even integer
    factor (nearest neighbour) to at least ``min_side``; ones over ``max_side`` shrunk
    (strided) to at most that; height and width cropped to even (yuv420p needs it)."""
    _, h, w, _ = frames.shape
    if max(h, w) > max_side:
        step = math.ceil(max(h, w) / max_side)
        frames = frames[:, ::step, ::step]
    elif min(h, w) < min_side:
        k = math.ceil(min_side / min(h, w))
        k += k % 2
        frames = frames.repeat(k, axis=1).repeat(k, axis=2)
    _, h, w, _ = frames.shape
    return np.ascontiguousarray(frames[:, : h - h % 2, : w - w % 2])


def write_browser_video(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], fps: float = 8.0
) -> Path:
    """Re-encodes ``src`` (any video PyAV reads) as VP9/WebM at ``dst``, atomically."""
    frames = display_frames(read_video(src))
    _, h, w, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1000) if fps and fps > 0 else Fraction(8)
    with atomic_path(dst) as tmp:
        with av.open(str(tmp), mode="w", format="webm") as container:
            stream = container.add_stream("libvpx-vp9", rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))
    return Path(dst)


def ssr_curve_pngs(run: RunDir, samples: list[tuple[str, str, str, str]]) -> list[bytes | None]:
    """Each ``(sample_id, initial, final, title)``'s SSR curves: the PNG ``score-batch
    --plots`` drew when there is one, else drawn from ``tracks.parquet`` (read once);
    None for a sample without tracks or relations (empty ``initial``/``final``)."""
    out: list[bytes | None] = []
    todo = []
    for sid, *_ in samples:
        drawn = run.plots_dir / f"{plot_name(sid)}.png"
        out.append(drawn.read_bytes() if drawn.is_file() else None)
        if not drawn.is_file():
            todo.append(len(out) - 1)
    if not todo or not run.tracks_path.is_file():
        return out
    ids = pa.array([samples[i][0] for i in todo], pa.string())
    tracks = read_tracks(run.tracks_path, ids, progress=False)
    for j, i in enumerate(todo):
        _, initial, final, title = samples[i]
        if tracks.n_rows[j] == 0 or not (initial and final):
            continue
        frames, animal, obj = tracks.sample(j)
        r_i = dsr_geom.ssr_scores(animal, obj, initial)
        r_f = dsr_geom.ssr_scores(animal, obj, final)
        out[i] = ssr_figure_png(frames, r_i, r_f, initial, final, title)
    return out
