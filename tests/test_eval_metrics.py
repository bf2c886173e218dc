"""The per-video metrics row (weight-free path; the neural path is in test_eval_neural)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from spatialalign.evaluation.metrics import (
    METRIC_COLUMNS,
    both_detected,
    tracked_boxes_by_frame,
    video_metrics,
)
from spatialalign.evaluation.proxies import (
    colourfulness,
    crop_histogram_consistency,
    sharpness,
)


def test_row_without_models():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 12, 16, 3), dtype=np.uint8)
    animal = np.tile([1.0, 1, 6, 6], (4, 1))
    obj = np.tile([8.0, 2, 14, 10], (4, 1))
    obj[2] = np.nan  # frame 2: no object -> left out of the consistency metrics
    row = video_metrics(frames, animal, obj)
    assert list(row) == list(METRIC_COLUMNS)
    assert row["sharpness"] == sharpness(frames)
    assert row["colourfulness"] == colourfulness(frames)
    keep = [0, 1, 3]
    want = crop_histogram_consistency(frames[keep], animal[keep]).mean
    assert row["hist_consistency"] == pytest.approx(want)
    assert all(math.isnan(row[c]) for c in METRIC_COLUMNS if c.startswith(("id_", "clip")))


def test_both_detected():
    a = np.array([[0, 0, 1, 1], [np.nan] * 4, [0, 0, 1, 1.0]])
    o = np.array([[np.nan] * 4, [0, 0, 1, 1], [0, 0, 2, 2.0]])
    got = both_detected(a, o)
    assert np.isnan(got[:2]).all() and (got[2] == a[2]).all()
    with pytest.raises(ValueError, match="shape"):
        both_detected(a, o[:2])


def test_tracked_boxes_by_frame(tmp_path):
    """Sparse track rows -> dense ``[F, 4]`` boxes (NaN where untracked), as metrics_file
    measures a video with them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from spatialalign.core.schemas import TRACKS
    from spatialalign.core.video import read_video, write_video
    from spatialalign.rundir.tracks import read_tracks

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    write_video(tmp_path / "a.mp4", frames, fps=8)
    rows = []
    for f in (0, 1, 3, 7):  # frames 2 and 4 untracked; 7 is past the video's end
        rows.append(dict(sample_id="a", frame=f, label="animal", x0=1.0, y0=1.0, x1=7.0, y1=7.0))
        rows.append(dict(sample_id="a", frame=f, label="object", x0=8.0, y0=2.0, x1=15.0, y1=9.0))
    for r in rows:
        r["score"] = 0.9
    pq.write_table(pa.Table.from_pylist(rows, schema=TRACKS), tmp_path / "tracks.parquet")
    tracks = read_tracks(tmp_path / "tracks.parquet", pa.array(["a", "b"]), progress=False)
    decoded = read_video(tmp_path / "a.mp4")
    animal, obj = tracked_boxes_by_frame(tracks, 0, len(decoded))
    want = np.full((5, 4), np.nan)
    want[[0, 1, 3]] = [1, 1, 7, 7]
    np.testing.assert_array_equal(animal, want)
    assert obj.shape == (5, 4) and np.isnan(obj[[2, 4]]).all() and (obj[3] == [8, 2, 15, 9]).all()
    row = video_metrics(decoded, animal, obj)
    assert row["sharpness"] == sharpness(decoded)
    assert row["hist_consistency"] == crop_histogram_consistency(decoded, want).mean
    none_a, none_o = tracked_boxes_by_frame(tracks, 1, 3)  # "b" has no tracks
    assert np.isnan(none_a).all() and np.isnan(none_o).all() and none_a.shape == (3, 4)
